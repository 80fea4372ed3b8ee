"""How search candidates scale: candidates per minute in this process, in 2 local worker processes and as Ray
tasks on a local 2-CPU cluster, and the time Ray adds to a single candidate.

The same random-search candidates (a MACs budget, drawn from the seed) are evaluated by each pool after a
warm-up that loads TensorFlow, the data and the parent in every worker (start-up is reported apart). On a
2-core machine 2x is the physical limit of 2 processes.

    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/search_scaling.py --dense /work/notes/models/unet-nuclei.keras

Measured (2 cores, under the lock, other engineers' unlocked jobs sharing them; 8 timed candidates each,
flops=0.5, 20 steps of 4x64x64), after the candidate fixes of 82d64dc/9a3b8aa: 1 process 58.2 candidates/min
(1.03 s each); 2 processes 74.8 (1.29x); Ray on 2 CPUs 77.7 (1.33x); warm-up 7.4 / 11.0 / 13.8 s; Ray adds
0.004 s to a single candidate. Before those fixes (3.54 s per candidate, most of it re-instantiating the
train step on one thread) 1 process made 17.0/min and 2 processes 32.2 (1.90x): a candidate is now mostly
TensorFlow's own 2-thread kernels, so one process already keeps both cores busy and workers gain little on
a 2-core machine; they pay off where there are more cores than one process uses.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
from segprune import load_data, load_model
from segprune.graph import build_channel_graph
from segprune.models import unet
from segprune.search.budget import Budget
from segprune.search.evaluation import Candidate, CandidatePool, CandidateSettings
from segprune.search.kinds import network_timer
from segprune.search.pools import RayPool
from segprune.search.random_search import sample_configurations
from segprune.search.settings import SearchSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="nuclei")
    parser.add_argument("--dense", default=None, help="a trained model (default: an untrained default U-Net; cost is what is measured)")
    parser.add_argument("--candidates", type=int, default=8, help="timed candidates per pool")
    parser.add_argument("--target", default="flops=0.5")
    parser.add_argument("--pools", default="1,2,ray", help="which of 1 (this process), 2 (two processes), ray")
    parser.add_argument("--json", default=None)
    arguments = parser.parse_args()

    data = load_data(arguments.data)
    dense = load_model(arguments.dense) if arguments.dense else unet(num_classes=data.num_classes, input_channels=data.image_channels)
    folder = Path(tempfile.mkdtemp(prefix="segprune-scaling-"))
    parent = folder / "dense.keras"
    dense.save(parent)
    target = SearchSettings(target=arguments.target)
    budget = Budget(build_channel_graph(dense, input_shape=target.image_size), target, folder, network_timer(dense, target))
    settings = CandidateSettings()
    draws = sample_configurations(budget, seed=0)
    configs = [next(draws) for _ in range(arguments.candidates + 2)]
    dense_config = budget.space.dense()

    def candidates(prefix: str, chosen: list[dict]) -> list[Candidate]:
        return [Candidate(f"{prefix}{index}", str(parent), dense_config, config) for index, config in enumerate(chosen)]

    rows = []
    pools = arguments.pools.split(",")
    for name in pools:
        started = time.perf_counter()
        if name == "ray":
            import ray

            ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            pool = RayPool(data, settings, data_source=arguments.data)
        else:
            pool = CandidatePool(data, settings, workers=int(name), data_source=arguments.data)
        with pool:
            list(pool.map(candidates("warm", configs[:2])))  # every worker loads TensorFlow, the data, the parent
            warm_up = time.perf_counter() - started
            started = time.perf_counter()
            outcomes = list(pool.map(candidates("timed", configs[2:])))
            seconds = time.perf_counter() - started
            row = {"pool": {"1": "1 process", "2": "2 processes"}.get(name, "Ray, 2 CPUs"), "candidates": len(outcomes),
                   "per_minute": 60 * len(outcomes) / seconds, "warm_up_s": warm_up,
                   "mean_candidate_s": sum(o["seconds"] for _, o in outcomes) / len(outcomes)}
            if name == "ray":
                overheads = []
                for candidate in candidates("single", configs[2:5]):
                    started = time.perf_counter()
                    (_, outcome), = pool.map([candidate])
                    overheads.append(time.perf_counter() - started - outcome["seconds"])
                row["ray_overhead_s"] = sorted(overheads)[len(overheads) // 2]
        if name == "ray":
            ray.shutdown()
        rows.append(row)
        print(json.dumps(row), flush=True)

    base = next((r["per_minute"] for r in rows if r["pool"] == "1 process"), None)
    print(f"\n{arguments.candidates} candidates each, {arguments.target}, {settings.finetune_steps} steps of "
          f"{settings.batches.batch_size}x{settings.batches.image_size}x{settings.batches.image_size}")
    print(f"{'pool':<14}{'cand/min':>10}{'speed-up':>10}{'s/cand':>8}{'warm-up s':>11}")
    for row in rows:
        speedup = f"{row['per_minute'] / base:.2f}x" if base else "-"
        print(f"{row['pool']:<14}{row['per_minute']:>10.1f}{speedup:>10}{row['mean_candidate_s']:>8.2f}{row['warm_up_s']:>11.1f}")
    for row in rows:
        if "ray_overhead_s" in row:
            print(f"Ray adds {row['ray_overhead_s']:.3f} s to a single candidate (median of 3; task round trip minus its own time)")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
