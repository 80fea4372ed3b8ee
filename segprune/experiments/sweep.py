"""The sweep: an experiment runner over every method at every budget, fine-tuned and measured the same way, resumable.

Each finished candidate is appended to `results.jsonl` in the output folder (and its model saved), so an
interrupted sweep restarts where it stopped. With `executor="ray"` every cell (a method at a budget) is a Ray
task: the dense model and the data go through the object store, the task returns its row and model file,
and the driver alone writes them, so a cell retried after its worker died is logged once. Deployment is measured last (`deployment.py`): every network
exported at a fixed shape for each runtime, optionally quantized to int8, and the files of one runtime timed
together in interleaved rounds, so that the ratios between them are fair.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

from segprune import defaults
from segprune._io import save_model
from segprune._jsonlines import JsonLines
from segprune.api import ONESHOT_METHODS as CRITERIA
from segprune.api import REGULARISED_METHODS, SEARCH_METHODS, PruneResult, prune
from segprune.classical import METHODS as CLASSICAL_METHODS
from segprune.classical import evaluate_classical
from segprune.cost import flops
from segprune.data.dataset import SegmentationDataset
from segprune.experiments.deployment import check_runtimes, measure_deployments
from segprune.inference import measurement_size
from segprune.intervals import paired_loss
from segprune.metrics import evaluate
from segprune.models.loading import load_model
from segprune.progress_lines import LineReporters
from segprune.report.tables import write_tables
from segprune.search.pools import RAY_RETRIES, dataset_from_snapshot, import_ray, snapshot_dataset
from segprune.sizes import format_size
from segprune.training import DistillConfig, TrainConfig
from segprune.training.run_state import data_fingerprint, model_fingerprint

ONESHOT_METHODS = tuple(f"oneshot-{criterion}" for criterion in CRITERIA)
STRUCTURED_METHODS = (*ONESHOT_METHODS, *REGULARISED_METHODS, *SEARCH_METHODS)
SWEEP_METHODS = (*STRUCTURED_METHODS, *(f"classical-{name}" for name in CLASSICAL_METHODS))
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs.

    Attributes:
        methods: Names from `SWEEP_METHODS`: `oneshot-<criterion>`, `slimming` and `l0-channel` (as many
            epochs of regularised training as of fine-tuning), `greedy` and `random-search` (small searches:
            `search_candidates` steps or candidates of 10 fine-tune steps), `classical-<method>`.
        budgets: Fractions of the dense MACs (at `image_size`) for the pruning methods.
        finetune_epochs: Fine-tuning after each pruning.
        ignore: Layers whose channels every pruned model keeps (as `prune`'s `ignore`).
        method_epochs: Fine-tuning epochs for particular methods (sweep method name -> epochs), overriding
            `finetune_epochs` for them.
        distill: Fine-tune with knowledge distillation from the dense model (on by default, as on the command
            line; None: ground truth only).
        tolerance: Dice points below dense that still count as "as good" for the balance point.
        image_size: MACs are counted and latency measured at this (height, width) (N for NxN), models exported at
            1 x height x width; by default the size the model was built for, else 256x256.
        threads: Runtime threads.
        runtimes: Runtimes every network is exported to and timed on (`onnxruntime`, `openvino`, `litert`);
            the first one's fp32 figure fills `latency_ms` and `speedup`.
        int8: Also quantize every network to int8 for each runtime that supports it, and time that too.
        search_candidates: Random-search candidates, and greedy steps, per budget.
        executor: `"local"` (cells one after another in this process) or `"ray"` (every cell a Ray task,
            on the cluster at `ray_address`, or on a local one started for the sweep).
        ray_address: The Ray cluster to use (`"auto"`, `"ray://host:10001"`); None starts a local one.
    """

    methods: tuple[str, ...] = ("oneshot-l1", "oneshot-random", "classical-otsu", "classical-kmeans")
    budgets: tuple[float, ...] = defaults.SWEEP_BUDGETS
    finetune_epochs: int = defaults.SWEEP_FINETUNE_EPOCHS
    ignore: tuple[str, ...] = ()
    method_epochs: Mapping[str, int] = field(default_factory=dict)
    distill: DistillConfig | None = field(default_factory=lambda: DistillConfig() if defaults.DISTILL else None)
    tolerance: float = defaults.TOLERANCE
    image_size: int | tuple[int, int] | None = None
    threads: int = 2
    runtimes: tuple[str, ...] = ("onnxruntime",)
    int8: bool = False
    search_candidates: int = 8
    train: TrainConfig = field(default_factory=TrainConfig)
    executor: str = "local"
    ray_address: str | None = None

    def epochs_for(self, method: str) -> int:
        return self.method_epochs.get(method, self.finetune_epochs)

    def __post_init__(self) -> None:
        check_runtimes(self.runtimes)
        unknown = [m for m in self.methods if m not in SWEEP_METHODS]
        if unknown:
            raise ValueError(f"Unknown sweep method(s) {unknown}; available: {list(SWEEP_METHODS)}.")
        unknown = [m for m in self.method_epochs if m not in self.methods]
        if unknown:
            raise ValueError(f"method_epochs names method(s) {unknown} that the sweep does not run ({list(self.methods)}).")
        if any(not 0 < b <= 1 for b in self.budgets):
            raise ValueError(f"Budgets are fractions of the dense MACs in (0, 1], got {list(self.budgets)}.")
        if self.executor not in EXECUTORS:
            raise ValueError(f"Unknown executor {self.executor!r}; choose one of {list(EXECUTORS)}.")
        if self.ray_address is not None and self.executor != "ray":
            raise ValueError("ray_address is the Ray cluster the sweep's cells run on: it needs executor='ray' (--executor ray).")


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
        One row per candidate (dense first): method, budget, dice, iou, pixel_accuracy (each with a 95%
        `<score>_interval` from a bootstrap over the test images, and `num_images`), macs, params, latency_ms,
        speedup, model path (None for classical rows) and seconds spent; a pruned row also has `dice_loss`
        (dense Dice minus its own) and `dice_loss_interval`, a paired bootstrap over the same images.

    Example:
        >>> rows = run_sweep(model, segprune.load_data("nuclei"), "runs/sweep")
    """
    config = config or SweepConfig()
    config = replace(config, image_size=measurement_size(model, config.image_size))
    say = progress or (lambda message: None)
    out_dir = Path(out_dir)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    log = JsonLines(out_dir / "results.jsonl")
    log.repair()  # a row torn by a kill is cut off, so the next one starts a line of its own
    done = {(row["method"], row["budget"]): row for row in log.read()}
    source = {"model": model_fingerprint(model), **data_fingerprint(data)}
    _check_same_source(done, source, log.path)
    dense_macs = flops(model, config.image_size).macs

    plan = [("dense", None)] + [(m, b) for m in config.methods if m in STRUCTURED_METHODS for b in config.budgets]
    plan += [(m, None) for m in config.methods if m.startswith("classical-")]
    for index, (method, budget) in enumerate(plan, start=1):
        if (method, budget) in done:
            say(f"[{index}/{len(plan)}] {method} {budget or ''}: done earlier (resumed)")
    pending = [(index, cell) for index, cell in enumerate(plan, start=1) if cell not in done]
    runner = _run_on_ray if config.executor == "ray" else _run_here
    for index, (method, budget), row in runner(model, data, pending, config, out_dir, dense_macs, say):
        if method == "dense":
            row["source"] = source  # what a resumed sweep must be given again
        log.append(row)
        done[(method, budget)] = row
        interval = "" if row.get("dice_interval") is None else " [{:.4f}, {:.4f}]".format(*row["dice_interval"])
        say(f"[{index}/{len(plan)}] {method} {budget or ''}: Dice {row['dice']:.4f}{interval} ({row['seconds']:.0f}s)")

    rows = with_paired_losses([done[key] for key in plan if key in done])
    measure_deployments(rows, data, out_dir, config.runtimes, config.int8, config.image_size, config.threads, say)
    write_tables(rows, out_dir)
    return rows


def with_paired_losses(rows: list[dict]) -> list[dict]:
    """The rows without their per-image counts, each row scored on the dense row's images given its paired Dice loss.

    `dice_loss` is dense Dice minus the row's, `dice_loss_interval` its 95% interval from a bootstrap that draws
    the same test images for both (None where the row's counts are missing, from a log written before
    segprune kept them, or are of other classes, as a classical method's foreground-only counts).

    Example:
        >>> with_paired_losses(rows)[1]["dice_loss_interval"]
        [0.002, 0.011]
    """
    dense = next((row for row in rows if row["method"] == "dense"), None)
    dense_counts = None if dense is None or dense.get("image_counts") is None else np.asarray(dense["image_counts"])
    result = []
    for logged in rows:
        row = {key: value for key, value in logged.items() if key != "image_counts"}
        counts = logged.get("image_counts")
        if row["method"] != "dense" and dense_counts is not None and counts is not None and np.shape(counts) == dense_counts.shape:
            loss = paired_loss(dense_counts, np.asarray(counts))
            row.update(dice_loss=loss.loss, dice_loss_interval=[loss.low, loss.high])
        result.append(row)
    return result


def _check_same_source(done: dict, source: dict, log_path: Path) -> None:
    """Rows resume by method and budget, so they must come from the dense model and data given now."""
    earlier = done.get(("dense", None), {}).get("source")
    if earlier is None or earlier == source:
        return
    differs = [key for key in source if earlier.get(key) != source[key]]
    raise ValueError(
        f"{str(log_path)!r} holds a sweep of another dense model or dataset ({', '.join(differs)} differ); its rows cannot be "
        "resumed with these. Give the sweep a new output folder, or delete that one to start over."
    )


def _run_here(model, data, pending, config: SweepConfig, out_dir: Path, dense_macs: int, say: Progress | None = None):
    """Yields `(index, cell, row)` for the pending cells, run one after another in this process; each cell's search and
    fine-tune progress goes to `say`, named by its cell."""
    for index, (method, budget) in pending:
        started = time.perf_counter()
        row = _run_one(model, data, method, budget, config, out_dir, dense_macs, say)
        row["seconds"] = time.perf_counter() - started
        yield index, (method, budget), row


def _run_on_ray(model, data, pending, config: SweepConfig, out_dir: Path, dense_macs: int, say: Progress | None = None):
    """Yields `(index, cell, row)` for the pending cells, each run as a Ray task, in plan order.

    Tasks return their row and their model file's bytes; the driver writes the file where a local sweep
    would have, so the deployment phase and a resumed sweep find it. A task retried after its worker died
    is handed over, and so logged, once. Progress within a cell stays on its worker (`say` hears each finished cell).
    """
    if not pending:
        return
    ray = import_ray()
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=config.ray_address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as folder:
            save_model(model, Path(folder) / "dense.keras")
            shared = [ray.put((Path(folder) / "dense.keras").read_bytes()), ray.put(snapshot_dataset(data))]  # once for every cell
        task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES, retry_exceptions=False)(_cell_on_ray)
        references = [task.remote(method, budget, shared, config, dense_macs) for _, (method, budget) in pending]
        for (index, cell), reference in zip(pending, references):
            row, model_bytes = ray.get(reference)
            if model_bytes is not None:
                path = out_dir / "models" / Path(row["model_path"]).name
                path.write_bytes(model_bytes)
                row["model_path"] = str(path)
            yield index, cell, row
    finally:
        if started_ray:
            ray.shutdown()


def _cell_on_ray(method: str, budget: float | None, shared: list, config: SweepConfig, dense_macs: int) -> tuple[dict, bytes | None]:
    """One sweep cell in a Ray worker, in a folder of its own; returns its row and its model file's bytes."""
    ray = import_ray()
    model_bytes, snapshot = ray.get(shared)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        out_dir = Path(folder)
        (out_dir / "models").mkdir()
        (out_dir / "dense.keras").write_bytes(model_bytes)
        row = _run_one(load_model(out_dir / "dense.keras"), dataset_from_snapshot(snapshot), method, budget, config, out_dir, dense_macs)
        model_file = Path(row["model_path"]).read_bytes() if row["model_path"] else None
    row["seconds"] = time.perf_counter() - started
    return row, model_file


def _run_one(model, data, method: str, budget: float | None, config: SweepConfig, out_dir: Path, dense_macs: int, say: Progress | None = None) -> dict:
    if method.startswith("classical-"):
        result = evaluate_classical(method.removeprefix("classical-"), data, "test")
        row = _row(method, budget, result.dice, result.iou, result.pixel_accuracy, None, None, None, result.ms_per_image)
        row.update(
            dice_interval=result.dice_interval, iou_interval=result.iou_interval,
            pixel_accuracy_interval=result.pixel_accuracy_interval, num_images=result.num_images,
        )
        row["foreground_only"] = result.collapsed_to_binary
        row["found_nothing"] = not result.dice > 0  # no foreground pixel of the truth found on any test tile
        return row
    pruned = None
    path = out_dir / "models" / f"{method}-{budget}.keras" if budget else out_dir / "models" / "dense.keras"
    if method == "dense":
        candidate = model
        save_model(candidate, path)
    else:  # prune() saves the model at `path`, and keeps its fine-tune's state beside it until then (resumable)
        pruned = _pruned(model, data, method, f"flops={budget}", config, out_dir / "search" / f"{method}-{budget}", path, say)
        candidate = pruned.model
    scores = evaluate(candidate, data, "test")
    macs = flops(candidate, config.image_size).macs
    row = _row(method, budget, scores.dice, scores.iou, scores.pixel_accuracy, macs / dense_macs, candidate.count_params(), str(path), None)
    row.update(
        dice_interval=scores.dice_interval.to_list(), iou_interval=scores.iou_interval.to_list(),
        pixel_accuracy_interval=scores.pixel_accuracy_interval.to_list(), num_images=scores.num_images,
        image_counts=scores.image_counts.tolist(),  # for the paired loss against dense, drawn once every row is in
    )
    row["image_size"] = format_size(config.image_size)  # MACs and latency are per image of this size (HxW)
    if pruned is not None:
        row.update(
            search_seconds=pruned.search.seconds if pruned.search is not None else 0.0,  # a searched row's cost includes its search
            finetune_epochs=pruned.finetune_epochs, finetune_seconds=pruned.finetune_seconds,
            distilled=config.distill is not None and pruned.finetune_epochs > 0, notes=list(pruned.notes),
        )
    return row


def _pruned(model, data, method: str, target: str, config: SweepConfig, folder: Path, path: Path, say: Progress | None = None) -> PruneResult:
    """`model` pruned to `target` by the sweep method `method` and fine-tuned for its epochs; its progress lines go to `say`."""
    epochs = config.epochs_for(method)
    lines = LineReporters(say, prefix=f"  {method} {target.split('=')[1]}: ") if say is not None else None
    progress = {} if lines is None else dict(on_epoch=lines.epoch, on_candidate=lines.candidate, on_search_start=lines.plan)
    if method in REGULARISED_METHODS:
        settings = {"regularise_epochs": max(1, epochs)}
    elif method in SEARCH_METHODS:
        # the sweep times every model together at the end, so the searches skip their own final timing
        count = "iterations" if method == "greedy" else "candidates"
        settings = {count: config.search_candidates, "candidate_steps": 10, "threads": config.threads, "time_result": False}
    else:
        method, settings = method.removeprefix("oneshot-"), {}
    return prune(
        model, method, target=target, data=data, finetune_epochs=epochs, image_size=config.image_size, train_config=config.train,
        distill=config.distill, ignore=config.ignore, checkpoint_path=path, folder=folder if method in SEARCH_METHODS else None, resume=True, progress=False,
        **progress, **settings,
    )


def _row(method, budget, dice, iou, pixel_accuracy, macs_ratio, params, model_path, classical_ms) -> dict:
    return {
        "method": method,
        "budget": budget,
        "dice": dice,
        "iou": iou,
        "pixel_accuracy": pixel_accuracy,
        "dice_interval": None,
        "iou_interval": None,
        "pixel_accuracy_interval": None,
        "num_images": None,
        "dice_loss": None,
        "dice_loss_interval": None,
        "macs_ratio": macs_ratio,
        "params": params,
        "model_path": model_path,
        "classical_ms_per_image": classical_ms,
        "latency_ms": None,
        "speedup": None,
        "foreground_only": False,
        "finetune_epochs": 0,
        "finetune_seconds": 0.0,
        "distilled": False,
        "notes": [],
        "found_nothing": False,
    }
