"""The sweep: every method at every budget, fine-tuned and measured the same way, resumable.

Each finished candidate is appended to `results.jsonl` in the output folder (and its model saved), so an
interrupted sweep restarts where it stopped. Latency is measured last, for all models together in
interleaved rounds, so that the ratios between them are fair.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras

from segprune._io import save_model, write_text
from segprune.classical import METHODS as CLASSICAL_METHODS
from segprune.classical import evaluate_classical
from segprune.cost import flops
from segprune.data.dataset import SegmentationDataset
from segprune.metrics import evaluate
from segprune.runtime.benchmark import onnx_latency
from segprune.runtime.export import export_onnx
from segprune.structured.importance import CRITERIA
from segprune.structured.oneshot import prune_channels
from segprune.training import TrainConfig, train

ONESHOT_METHODS = tuple(f"oneshot-{criterion}" for criterion in CRITERIA)
TRAINED_METHODS = ("slimming", "l0-channel")  # regularised training, then surgery
SEARCH_METHODS = ("greedy", "random-search")
STRUCTURED_METHODS = (*ONESHOT_METHODS, *TRAINED_METHODS, *SEARCH_METHODS)
SWEEP_METHODS = (*STRUCTURED_METHODS, *(f"classical-{name}" for name in CLASSICAL_METHODS))



@dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs.

    Attributes:
        methods: Names from `SWEEP_METHODS`: `oneshot-<criterion>`, `slimming` and `l0-channel` (as many
            epochs of regularised training as of fine-tuning), `greedy` and `random-search` (small searches:
            `search_candidates` steps or candidates of 10 fine-tune steps), `classical-<method>`.
        budgets: Fractions of the dense MACs (at 256x256) for the pruning methods.
        finetune_epochs: Fine-tuning after each pruning.
        tolerance: Dice points below dense that still count as "as good" for the balance point.
        image_size: Latency is measured on 1 x image_size x image_size inputs.
        threads: ONNX Runtime threads.
        search_candidates: Random-search candidates, and greedy steps, per budget.
    """

    methods: tuple[str, ...] = ("oneshot-l1", "oneshot-random", "classical-otsu", "classical-kmeans")
    budgets: tuple[float, ...] = (0.5, 0.25, 0.125)
    finetune_epochs: int = 10
    tolerance: float = 1.0
    image_size: int = 256
    threads: int = 2
    search_candidates: int = 8
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in SWEEP_METHODS]
        if unknown:
            raise ValueError(f"Unknown sweep method(s) {unknown}; available: {list(SWEEP_METHODS)}.")
        if any(not 0 < b <= 1 for b in self.budgets):
            raise ValueError(f"Budgets are fractions of the dense MACs in (0, 1], got {list(self.budgets)}.")


Progress = Callable[[str], None]


def run_sweep(
    model: keras.Model,
    data: SegmentationDataset,
    out_dir: str | Path,
    config: SweepConfig | None = None,
    progress: Progress | None = None,
) -> list[dict]:
    """Runs (or resumes) the sweep and writes `results.csv`, `results.json` and `models/` into `out_dir`.

    Returns:
        One row per candidate (dense first): method, budget, dice, iou, pixel_accuracy, macs, params,
        latency_ms, speedup, model path (None for classical rows) and seconds spent.

    Example:
        >>> rows = run_sweep(model, segprune.load_data("synthetic"), "runs/sweep")
    """
    config = config or SweepConfig()
    say = progress or (lambda message: None)
    out_dir = Path(out_dir)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    log = out_dir / "results.jsonl"
    done = {(row["method"], row["budget"]): row for row in _read_log(log)}
    dense_macs = flops(model, (config.image_size, config.image_size)).macs

    plan = [("dense", None)] + [(m, b) for m in config.methods if m in STRUCTURED_METHODS for b in config.budgets]
    plan += [(m, None) for m in config.methods if m.startswith("classical-")]
    for index, (method, budget) in enumerate(plan, start=1):
        if (method, budget) in done:
            say(f"[{index}/{len(plan)}] {method} {budget or ''}: done earlier (resumed)")
            continue
        started = time.perf_counter()
        row = _run_one(model, data, method, budget, config, out_dir, dense_macs)
        row["seconds"] = time.perf_counter() - started
        _append_log(log, row)
        done[(method, budget)] = row
        say(f"[{index}/{len(plan)}] {method} {budget or ''}: Dice {row['dice']:.4f} ({row['seconds']:.0f}s)")

    rows = [done[key] for key in plan if key in done]
    _measure_latency(rows, out_dir, config, say)
    _write_tables(rows, out_dir)
    return rows


def balance_point(rows: list[dict], tolerance: float) -> dict | None:
    """The fastest network within `tolerance` Dice points of the dense model (None if nothing is timed)."""
    dense = next((row for row in rows if row["method"] == "dense"), None)
    if dense is None:
        return None
    floor = dense["dice"] - tolerance / 100.0
    timed = [row for row in rows if row.get("latency_ms") is not None and row["dice"] >= floor]
    return min(timed, key=lambda row: row["latency_ms"], default=None)


def _run_one(model, data, method: str, budget: float | None, config: SweepConfig, out_dir: Path, dense_macs: int) -> dict:
    if method.startswith("classical-"):
        result = evaluate_classical(method.removeprefix("classical-"), data, "test")
        row = _row(method, budget, result.dice, result.iou, result.pixel_accuracy, None, None, None, result.ms_per_image)
        row["foreground_only"] = result.collapsed_to_binary
        return row
    if method == "dense":
        candidate = model
    else:
        candidate = _pruned(model, data, method, f"flops={budget}", config, out_dir / "search" / f"{method}-{budget}")
    path = out_dir / "models" / f"{method}-{budget}.keras" if budget else out_dir / "models" / "dense.keras"
    save_model(candidate, path)
    scores = evaluate(candidate, data, "test")
    macs = flops(candidate, (config.image_size, config.image_size)).macs
    return _row(method, budget, scores.dice, scores.iou, scores.pixel_accuracy, macs / dense_macs, candidate.count_params(), str(path), None)


def _pruned(model, data, method: str, target: str, config: SweepConfig, folder: Path) -> keras.Model:
    """`model` pruned to `target` by `method` and fine-tuned for `config.finetune_epochs`."""
    if method in TRAINED_METHODS:
        from segprune.structured.regularised import l0_channel_prune, slimming_prune

        prune = slimming_prune if method == "slimming" else l0_channel_prune
        return prune(model, data, target, epochs=max(1, config.finetune_epochs), finetune_epochs=config.finetune_epochs, config=config.train).model
    if method in SEARCH_METHODS:
        from segprune.search.evaluation import CandidateSettings
        from segprune.search.greedy import greedy_search
        from segprune.search.random_search import random_search
        from segprune.search.settings import SearchSettings

        settings = SearchSettings(target=target, image_size=config.image_size, threads=config.threads,
                                  final_epochs=config.finetune_epochs, time_result=False)
        candidates = CandidateSettings(finetune_steps=10)
        if method == "greedy":
            return greedy_search(model, data, folder, settings, candidates, iterations=config.search_candidates, resume=True).model
        return random_search(model, data, folder, settings, candidates, config.search_candidates, resume=True).model
    candidate = prune_channels(model, importance=method.removeprefix("oneshot-"), target=target, data=data)
    if config.finetune_epochs:
        train(candidate, data, config.finetune_epochs, config.train)
    return candidate


def _row(method, budget, dice, iou, pixel_accuracy, macs_ratio, params, model_path, classical_ms) -> dict:
    return {
        "method": method,
        "budget": budget,
        "dice": dice,
        "iou": iou,
        "pixel_accuracy": pixel_accuracy,
        "macs_ratio": macs_ratio,
        "params": params,
        "model_path": model_path,
        "classical_ms_per_image": classical_ms,
        "latency_ms": None,
        "speedup": None,
        "foreground_only": False,
    }


def _measure_latency(rows: list[dict], out_dir: Path, config: SweepConfig, say: Progress) -> None:
    networks = [row for row in rows if row["model_path"]]
    if not networks:
        return
    say(f"timing {len(networks)} models on ONNX Runtime, interleaved")
    onnx_dir = out_dir / "onnx"
    paths = []
    for row in networks:
        path = onnx_dir / (Path(row["model_path"]).stem + ".onnx")
        if not path.exists():
            export_onnx(keras.saving.load_model(row["model_path"]), path)
        paths.append(path)
    latencies = onnx_latency(paths, image_size=config.image_size, threads=config.threads)
    dense_ms = latencies[0].median_ms
    for row, latency in zip(networks, latencies):
        row["latency_ms"] = latency.median_ms
        row["speedup"] = dense_ms / latency.median_ms


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by an interruption: that candidate runs again
    return rows


def _append_log(path: Path, row: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()


def _write_tables(rows: list[dict], out_dir: Path) -> None:
    write_text(out_dir / "results.json", json.dumps(rows, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "results.csv", buffer.getvalue())
