"""Search-based channel pruning on the real nuclei data, next to one-shot L1 at the same budgets.

For each MACs budget: one-shot L1, greedy (NetAdapt) search and random search, every result fine-tuned
for the same number of epochs; plus a greedy search to a measured-latency budget. All final models and the
dense one are timed together on ONNX Runtime (1x256x256, 2 threads, interleaved medians).

    .venv/bin/python benchmarks/search_nuclei.py --dense runs/unet.keras [--budgets 0.25,0.125] [--latency 0.25]
        [--methods oneshot,greedy,random] [--executor ray]

Candidates are judged with the library's defaults (`CandidateSettings()`) unless --candidate-steps is given.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras

import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
from segprune import TrainConfig, evaluate, flops, load_data, load_model, train
from segprune.graph import build_channel_graph
from segprune.models import unet
from segprune.runtime.latency import time_models
from segprune.search.evaluation import CandidateSettings
from segprune.search.greedy import family, greedy_search
from segprune.search.random_search import random_search
from segprune.search.settings import SearchSettings
from segprune.structured.oneshot import prune_channels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="nuclei", help="a dataset folder, or the built-in nuclei tiles")
    parser.add_argument("--dense", default=None, help="a trained model; trained here with the defaults when absent")
    parser.add_argument("--budgets", default="0.25,0.125", help="MACs fractions")
    parser.add_argument("--latency", type=float, default=0.25, help="latency fraction for the latency-budget greedy run (0 skips)")
    parser.add_argument("--finetune-epochs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=10, help="greedy steps to the smallest budget (the library's default)")
    parser.add_argument("--methods", default="oneshot,greedy,random", help="which of oneshot, greedy, random to run")
    parser.add_argument("--candidates", type=int, default=20, help="random-search candidates")
    parser.add_argument("--candidate-steps", type=int, default=None, help="short fine-tune steps (default: the library's)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--executor", default="local", choices=("local", "ray"))
    parser.add_argument("--folder", default="runs/bench/search", help="search logs and state")
    parser.add_argument("--json", default=None)
    arguments = parser.parse_args()

    data = load_data(arguments.data)
    keras.utils.set_random_seed(0)
    if arguments.dense:
        dense = load_model(arguments.dense)
    else:
        dense = unet(num_classes=data.num_classes, input_channels=data.image_channels)
        train(dense, data, epochs=40)
    dense_macs = flops(dense, (256, 256)).macs
    budgets = [float(b) for b in arguments.budgets.split(",")]
    folder = Path(arguments.folder)
    candidates = CandidateSettings() if arguments.candidate_steps is None else CandidateSettings(finetune_steps=arguments.candidate_steps)
    methods = set(arguments.methods.split(","))
    finetune = TrainConfig(patience=None)
    graph = build_channel_graph(dense, input_shape=SearchSettings().image_size)  # every search measures at the default size
    results = []  # (method, target, model, search seconds)

    def settings(target: str) -> SearchSettings:
        return SearchSettings(target=target, final_epochs=0, workers=arguments.workers, executor=arguments.executor, time_result=False)

    for budget in budgets if "oneshot" in methods else ():
        keras.utils.set_random_seed(0)
        started = time.perf_counter()
        results.append(("one-shot l1", f"flops={budget}", prune_channels(dense, importance="l1", target=f"flops={budget}"), time.perf_counter() - started))
    smallest = min(budgets)
    started = time.perf_counter()
    if "greedy" in methods:
        greedy_search(dense, data, folder / f"greedy-flops={smallest}", settings(f"flops={smallest}"), candidates,
                      iterations=arguments.iterations, resume=True, data_source=arguments.data, on_candidate=_progress, graph=graph)
    greedy_seconds = time.perf_counter() - started
    steps = family(folder / f"greedy-flops={smallest}") if "greedy" in methods else []
    for budget in budgets if steps else ():
        step = next(s for s in steps if s["share"] <= budget)
        spent = greedy_seconds * (steps.index(step) + 1) / len(steps)  # the share of the search that reached it
        results.append(("greedy", f"flops={budget}", load_model(step["model"]), spent))
    for budget in budgets if "random" in methods else ():
        started = time.perf_counter()
        found = random_search(dense, data, folder / f"random-flops={budget}", settings(f"flops={budget}"), candidates,
                              arguments.candidates, resume=True, data_source=arguments.data, on_candidate=_progress, graph=graph)
        results.append(("random search", f"flops={budget}", found.model, time.perf_counter() - started))
    latency_note = None
    if arguments.latency:
        started = time.perf_counter()
        found = greedy_search(dense, data, folder / f"greedy-latency={arguments.latency}", settings(f"latency={arguments.latency}"),
                              candidates, iterations=arguments.iterations, resume=True, data_source=arguments.data, on_candidate=_progress,
                              graph=graph)
        results.append(("greedy", f"latency={arguments.latency}", found.model, time.perf_counter() - started))
        latency_note = f"latency search estimated {found.resource_fraction:.3f} of dense ({found.latency_source})"

    rows = []
    for method, target, model, seconds in results:
        train(model, data, arguments.finetune_epochs, finetune)
        rows.append(dict(method=method, target=target, macs=flops(model, (256, 256)).macs / dense_macs,
                         dice=evaluate(model, data, "test").dice, search_seconds=seconds))
        print(json.dumps(rows[-1]), flush=True)
    timings = time_models([dense] + [model for _, _, model, _ in results], SearchSettings().image_size, SearchSettings().threads)
    dense_dice = evaluate(dense, data, "test").dice
    print(f"\nnuclei test tiles; ONNX Runtime 1x256x256, 2 threads, interleaved medians; {arguments.finetune_epochs} fine-tune epochs each")
    print(f"{'method':<15}{'target':<16}{'MACs':>7}{'ms':>8}{'speed-up':>10}{'Dice':>8}{'search s':>10}")
    print(f"{'dense':<15}{'-':<16}{1.0:>7.3f}{timings[0]:>8.2f}{1.0:>9.2f}x{dense_dice:>8.4f}{0:>10.0f}")
    for row, ms in zip(rows, timings[1:]):
        row.update(ms=ms, speedup=timings[0] / ms, latency_fraction=ms / timings[0])
        print(f"{row['method']:<15}{row['target']:<16}{row['macs']:>7.3f}{ms:>8.2f}{row['speedup']:>9.2f}x{row['dice']:>8.4f}{row['search_seconds']:>10.0f}")
    if latency_note:
        print(latency_note)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"dense_ms": timings[0], "dense_dice": dense_dice, "rows": rows}, indent=1))


def _progress(record: dict, best: dict) -> None:
    where = f"step {record['iteration'] + 1} {record['key']}" if "iteration" in record else f"candidate {record['index'] + 1}"
    print(f"  {where}: share {record['share']:.3f} val Dice {record['score']:.4f} ({record['seconds']:.1f}s)", flush=True)


if __name__ == "__main__":
    main()
