"""A sweep's instance rows: Mask R-CNN dense and pruned, U-Net + watershed, classical watershed, scored alike.

Every row carries COCO mask AP, AP50 and AP75 (pycocotools), the Data Science Bowl score, the Dice of the union
mask (all predicted objects against all true ones, over the whole test split), MACs and latency. Rows are
appended to `instances.jsonl` as they finish, so an interrupted sweep resumes at the next row (a Mask R-CNN
fine-tune that was cut short starts again). The predicted label images of the first test tiles are saved beside
them (`instances/*.npz`) for the report's outlines, so the report runs no model.

What is timed: a network's latency is its exported graph on ONNX Runtime at 1 x height x width (`image_size`; for
a U-Net, the figure of its row in the segmentation sweep; for a Mask R-CNN, its trunk: encoder, FPN and RPN
head, the Mask R-CNN trunks timed together in interleaved rounds). `python_ms_per_image` is what runs outside
that graph per test tile: the watershed split, the whole classical method, or Mask R-CNN's proposal decoding,
NMS, RoIAlign, RoI heads and mask pasting (Keras `detect` minus the trunk's Keras time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np

from segprune._jsonlines import JsonLines
from segprune.api import MASK_RCNN_METHODS, prune
from segprune.classical import watershed_segment, watershed_split
from segprune.cost import flops
from segprune.data.instances import InstanceDataset, Instances, instances_from_labels, load_instance_data
from segprune.inference import predict_classes
from segprune.instance_metrics import AP_MIN_SCORE, label_image, mask_ap, mean_dsb_score
from segprune.models.mask_rcnn import MaskRCNN, load_mask_rcnn, save_mask_rcnn
from segprune.report.instances import TILES_FILE
from segprune.report.tables import write_tables
from segprune.runtime.benchmark import file_latency
from segprune.runtime.export import export_model
from segprune.sizes import as_image_size, format_size
from segprune.training.run_state import model_fingerprint

CLASSICAL = "classical-watershed"
MASK_RCNN = "mask-rcnn"
WATERSHED_SUFFIX = "+watershed"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class InstanceSweepConfig:
    """What the instance rows run.

    Attributes:
        criteria: One-shot criteria the Mask R-CNN trunk is pruned by (from `segprune.api.MASK_RCNN_METHODS`).
        budgets: Fractions of the dense trunk's MACs.
        finetune_epochs: Mask R-CNN fine-tuning after pruning, in passes over the training tiles (the epoch with
            the best validation mask AP is kept).
        image_size: MACs are counted, and trunks exported and timed, at 1 x height x width (N is read as NxN).
        threads: ONNX Runtime threads.
        outline_tiles: Test tiles whose predicted objects the report outlines.
        min_distance: Smallest distance between two watershed seeds (pixels), for both watershed rows.
        round_to: Every pruned trunk group keeps a multiple of this many channels.
        seed: Seeds every pruned Mask R-CNN's fine-tune.
    """

    criteria: tuple[str, ...] = ("l1",)
    budgets: tuple[float, ...] = (0.5,)
    finetune_epochs: int = 40
    image_size: int | tuple[int, int] = 256
    threads: int = 2
    outline_tiles: int = 3
    min_distance: int = 5
    round_to: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", as_image_size(self.image_size))  # frozen: N read as (N, N) once, here
        unknown = [c for c in self.criteria if c not in MASK_RCNN_METHODS]
        if unknown:
            raise ValueError(f"A Mask R-CNN is pruned one-shot by {list(MASK_RCNN_METHODS)}; got {unknown}.")
        if any(not 0 < b <= 1 for b in self.budgets):
            raise ValueError(f"Budgets are fractions of the dense trunk's MACs in (0, 1], got {list(self.budgets)}.")
        if self.finetune_epochs < 0 or self.outline_tiles < 1:
            raise ValueError(f"finetune_epochs must be >= 0 and outline_tiles >= 1, got {self.finetune_epochs} and {self.outline_tiles}.")


def run_instance_sweep(
    data: InstanceDataset,
    out_dir: str | Path,
    networks: Sequence[dict] = (),
    mask_rcnn: MaskRCNN | None = None,
    config: InstanceSweepConfig | None = None,
    progress: Progress | None = None,
) -> list[dict]:
    """Runs (or resumes) the instance rows and writes `instance_results.json`/`.csv` into `out_dir`.

    Args:
        data: The instance dataset (its `test` split is scored; a `val` split is needed to fine-tune a Mask R-CNN).
        out_dir: The sweep's folder (the segmentation sweep's own, so one report shows both).
        networks: Rows of the segmentation sweep whose U-Nets (`model_path`) are split into objects by watershed.
        mask_rcnn: A trained Mask R-CNN: its dense row and one row per criterion and budget. None: no Mask R-CNN rows.
        config: Criteria, budgets, fine-tuning and measuring settings.
        progress: Called with one line per finished row.

    Returns:
        Rows in order: Mask R-CNN dense and pruned, U-Net + watershed per network, classical watershed.

    Example:
        >>> rows = run_instance_sweep(load_instance_data("nuclei", val_fraction=0.15), "runs/sweep", sweep_rows, model)
    """
    config = config or InstanceSweepConfig()
    say = progress or (lambda message: None)
    out_dir = Path(out_dir)
    (out_dir / "instances").mkdir(parents=True, exist_ok=True)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    log = JsonLines(out_dir / "instances.jsonl")
    log.repair()
    done = {(row["method"], row["budget"]): row for row in log.read()}
    fingerprint = None if mask_rcnn is None else model_fingerprint(mask_rcnn)
    _check_same_detector(done, fingerprint, log.path)
    test = _TestSplit.read(data, config.outline_tiles)
    np.savez_compressed(out_dir / "instances" / TILES_FILE, images=test.images[: config.outline_tiles], labels=test.outline_truth)

    plan: list[tuple[str, float | None, Callable[[], dict]]] = []
    if mask_rcnn is not None:
        plan.append((MASK_RCNN, None, lambda: {**_dense_mask_rcnn(mask_rcnn, test, config, out_dir), "detector": fingerprint}))
        for criterion in config.criteria:
            for budget in config.budgets:
                plan.append((f"{MASK_RCNN}-{criterion}", budget, _bind(_pruned_mask_rcnn, mask_rcnn, criterion, budget, data, test, config, out_dir)))
    for network in (row for row in networks if row.get("model_path")):
        plan.append((network["method"] + WATERSHED_SUFFIX, network["budget"], _bind(_unet_watershed, network, test, config, out_dir)))
    plan.append((CLASSICAL, None, lambda: _classical_watershed(test, config, out_dir)))

    for index, (method, budget, run) in enumerate(plan, start=1):
        label = f"{method} {'' if budget is None else budget}".strip()
        if (method, budget) in done:
            say(f"[instances {index}/{len(plan)}] {label}: done earlier (resumed)")
            continue
        started = time.perf_counter()
        row = run()
        row["seconds"] = time.perf_counter() - started
        log.append(row)
        done[(method, budget)] = row
        say(f"[instances {index}/{len(plan)}] {label}: mask AP {row['ap']:.3f}, AP50 {row['ap50']:.3f}, union Dice {row['union_dice']:.4f} "
            f"({row['seconds']:.0f}s)")
    rows = [done[(method, budget)] for method, budget, _ in plan]
    _network_timings(rows, networks)
    _time_mask_rcnn_trunks(rows, out_dir / "deploy" / "instances", config, say)
    _macs_ratios(rows)
    write_tables(rows, out_dir, stem="instance_results")
    return rows


def _check_same_detector(done: dict, fingerprint: str | None, log_path: Path) -> None:
    """Resumed Mask R-CNN rows must come from the Mask R-CNN given now, or the table would mix two detectors."""
    earlier = done.get((MASK_RCNN, None), {}).get("detector")
    if fingerprint is not None and earlier is not None and earlier != fingerprint:
        raise ValueError(
            f"{str(log_path)!r} holds rows of another Mask R-CNN than the one given now; give the sweep a new output folder "
            "(or delete that file's mask-rcnn rows) to score this one."
        )


def _bind(function, *arguments):
    return lambda: function(*arguments)


@dataclass
class _TestSplit:
    """The test tiles with their instances, and the label images of the tiles the report outlines."""

    images: np.ndarray
    truths: list[Instances]
    outline_truth: np.ndarray

    @classmethod
    def read(cls, data: InstanceDataset, outline_tiles: int) -> _TestSplit:
        images, truths = zip(*(data.load(sample_id) for sample_id in data.ids("test")))
        if len({image.shape for image in images}) != 1:
            raise ValueError(f"The instance rows score test tiles of one size; {data.name!r} has sizes {sorted({i.shape for i in images})}.")
        outline = np.stack([label_image(truth.masks) for truth in truths[:outline_tiles]])
        return cls(np.stack(images), list(truths), outline)


def _row(method: str, budget: float | None, family: str, scores: dict, labels: np.ndarray, out_dir: Path, **extra) -> dict:
    labels_path = out_dir / "instances" / f"{method}-{budget}.npz"
    np.savez_compressed(labels_path, labels=labels)
    row = {
        "method": method, "budget": budget, "family": family, **scores, "macs": None, "macs_ratio": None, "params": None,
        "latency_ms": None, "python_ms_per_image": None, "model_path": None, "labels_path": str(labels_path),
        "finetune_epochs": 0, "finetune_seconds": 0.0, "notes": [],
    }
    row.update(extra)
    return row


def _scores(truths: Sequence[Instances], ranked: Sequence, detected: Sequence) -> dict:
    """Mask AP on `ranked` (low-scoring detections too, COCO practice); DSB and union Dice on `detected`."""
    return {**mask_ap(truths, ranked), "dsb": mean_dsb_score(truths, detected), "union_dice": union_dice(truths, detected)}


def union_dice(truths: Sequence[Instances], predictions: Sequence) -> float:
    """Dice of the union of the predicted masks against the union of the true ones, pixels summed over all images.

    Example:
        >>> union_dice([instances], [instances])
        1.0
    """
    overlap = predicted_total = true_total = 0
    for truth, prediction in zip(truths, predictions, strict=True):
        true_union = truth.masks.any(axis=0) if len(truth.masks) else np.zeros(truth.image_shape, bool)
        predicted_union = prediction.masks.any(axis=0) if len(prediction.masks) else np.zeros(truth.image_shape, bool)
        overlap += int(np.logical_and(true_union, predicted_union).sum())
        predicted_total += int(predicted_union.sum())
        true_total += int(true_union.sum())
    return 1.0 if predicted_total + true_total == 0 else 2.0 * overlap / (predicted_total + true_total)


def _as_prediction(labels: np.ndarray) -> SimpleNamespace:
    """A label image as predictions, every object scoring 1 (watershed has no scores, so its AP has one operating point)."""
    instances = instances_from_labels(labels)
    return SimpleNamespace(masks=instances.masks, scores=np.ones(len(instances), np.float32), class_ids=instances.class_ids)


def _label_rows(method, budget, family, labels: list[np.ndarray], test: _TestSplit, config, out_dir, **extra) -> dict:
    predictions = [_as_prediction(label) for label in labels]
    scores = _scores(test.truths, predictions, predictions)
    return _row(method, budget, family, scores, np.stack(labels[: config.outline_tiles]), out_dir, **extra)


def _classical_watershed(test: _TestSplit, config: InstanceSweepConfig, out_dir: Path) -> dict:
    started = time.perf_counter()
    labels = [watershed_segment(image, min_distance=config.min_distance) for image in test.images]
    per_image_ms = 1000 * (time.perf_counter() - started) / len(labels)
    return _label_rows(CLASSICAL, None, "classical", labels, test, config, out_dir, python_ms_per_image=per_image_ms)


def _unet_watershed(network: dict, test: _TestSplit, config: InstanceSweepConfig, out_dir: Path) -> dict:
    model = keras.saving.load_model(network["model_path"], compile=False)
    foregrounds = [classes > 0 for classes in predict_classes(model, list(test.images))]
    started = time.perf_counter()
    labels = [watershed_split(foreground, config.min_distance) for foreground in foregrounds]
    per_image_ms = 1000 * (time.perf_counter() - started) / len(labels)
    return _label_rows(
        network["method"] + WATERSHED_SUFFIX, network["budget"], "unet+watershed", labels, test, config, out_dir,
        macs=flops(model, config.image_size).macs, params=model.count_params(), latency_ms=network.get("latency_ms"),
        python_ms_per_image=per_image_ms, model_path=network["model_path"],
        finetune_epochs=network.get("finetune_epochs", 0), finetune_seconds=network.get("finetune_seconds", 0.0),
    )


def _mask_rcnn_row(model: MaskRCNN, method: str, budget: float | None, test: _TestSplit, config: InstanceSweepConfig, path: Path, **extra) -> dict:
    ranked = model.detect(test.images, min_score=AP_MIN_SCORE)
    detected = model.detect(test.images)
    labels = np.stack([label_image(d.masks, d.scores) for d in detected[: config.outline_tiles]])
    return _row(
        method, budget, MASK_RCNN, _scores(test.truths, ranked, detected), labels, path.parent.parent,
        macs=flops(model.trunk, config.image_size).macs, params=model.count_params(), model_path=str(path),
        python_ms_per_image=_python_ms(model, test.images), **extra,
    )


def _python_ms(model: MaskRCNN, images: np.ndarray, repeats: int = 3) -> float:
    """Per tile: Keras `detect` minus the Keras trunk, medians of `repeats` (what stays in Python after exporting the trunk)."""
    detect, trunk = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        model.detect(images)
        detect.append(time.perf_counter() - started)
        started = time.perf_counter()
        model.trunk(images, training=False)
        trunk.append(time.perf_counter() - started)
    return 1000 * max(0.0, float(np.median(detect)) - float(np.median(trunk))) / len(images)


def _dense_mask_rcnn(model: MaskRCNN, test: _TestSplit, config: InstanceSweepConfig, out_dir: Path) -> dict:
    path = save_mask_rcnn(model, out_dir / "models" / f"{MASK_RCNN}.keras")
    return _mask_rcnn_row(model, MASK_RCNN, None, test, config, Path(path))


def _pruned_mask_rcnn(model, criterion: str, budget: float, data: InstanceDataset, test: _TestSplit, config, out_dir: Path) -> dict:
    path = out_dir / "models" / f"{MASK_RCNN}-{criterion}-{budget}.keras"
    result = prune(
        model, criterion, target=f"flops={budget}", data=data, finetune_epochs=config.finetune_epochs, image_size=config.image_size,
        round_to=config.round_to, seed=config.seed, checkpoint_path=path,
    )
    pruned = load_mask_rcnn(path)  # the file holds the kept (best validation AP) epoch
    seconds = result.seconds if config.finetune_epochs else 0.0
    return _mask_rcnn_row(
        pruned, f"{MASK_RCNN}-{criterion}", budget, test, config, path,
        finetune_epochs=config.finetune_epochs, finetune_seconds=seconds, notes=list(result.notes),
    )


def _network_timings(rows: list[dict], networks: Sequence[dict]) -> None:
    """U-Net + watershed rows take their U-Net's latency from this run's sweep rows (re-timed every run), not a resumed figure."""
    latency = {(network["method"] + WATERSHED_SUFFIX, network["budget"]): network.get("latency_ms") for network in networks}
    for row in rows:
        if row["family"] == "unet+watershed":
            row["latency_ms"] = latency.get((row["method"], row["budget"]))


def _time_mask_rcnn_trunks(rows: list[dict], folder: Path, config: InstanceSweepConfig, say: Progress) -> None:
    """Every Mask R-CNN row's trunk exported to ONNX (verified against Keras; kept for a resumed sweep) and timed interleaved."""
    detectors = [row for row in rows if row["family"] == MASK_RCNN]
    if not detectors:
        return
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in detectors:
        path = folder / f"{Path(row['model_path']).stem}-trunk.onnx"
        if not path.exists():
            trunk = load_mask_rcnn(row["model_path"]).trunk
            export_model(trunk, path, "onnx", input_shape=(1, *config.image_size, trunk.inputs[0].shape[-1]))
        paths.append(path)
    say(f"timing {len(paths)} Mask R-CNN trunks on onnxruntime (fp32, 1x{format_size(config.image_size)}, {config.threads} threads), interleaved")
    for row, latency in zip(detectors, file_latency(paths, runtime="onnxruntime", image_size=config.image_size, threads=config.threads)):
        row["latency_ms"] = latency.median_ms


def _macs_ratios(rows: list[dict]) -> None:
    """MACs as a fraction of the dense network of the same family (the Mask R-CNN trunk, the dense U-Net)."""
    dense = {row["family"]: row["macs"] for row in rows if row["budget"] is None and row["macs"]}
    for row in rows:
        reference = dense.get(row["family"])
        row["macs_ratio"] = row["macs"] / reference if row["macs"] and reference else None


def missing_mask_rcnn_note(command: str, data: str | Path = "nuclei") -> str:
    """The report's line when the Mask R-CNN rows were not run, with the commands that add them.

    Example:
        >>> missing_mask_rcnn_note("segprune demo --mask-rcnn runs/mask_rcnn.keras")
    """
    return (
        "Mask R-CNN rows were not run: no trained Mask R-CNN was given, and training one takes about 12 minutes on 2 CPU cores. "
        f"Train one with `segprune train --data {data} --model mask-rcnn --out runs/mask_rcnn.keras`, then add its dense and pruned rows "
        f"with `{command}`."
    )




def instance_data(source: str | Path, test_ids: Sequence[str], val_fraction: float = 0.15) -> InstanceDataset | None:
    """The instance view of a segmentation sweep's data source, or None when it has no `instances/` folder.

    Raises:
        ValueError: Its test tiles are not the segmentation data's (the rows would not be comparable).

    Example:
        >>> instance_data("nuclei", load_data("nuclei").ids("test")).name
        'nuclei'
    """
    if str(source) != "nuclei" and not (Path(source) / "instances").is_dir():
        return None
    data = load_instance_data(source, val_fraction=val_fraction)
    if sorted(data.ids("test")) != sorted(test_ids):
        raise ValueError(
            f"The instance test tiles of {str(source)!r} differ from its segmentation test tiles ({len(data.ids('test'))} vs {len(test_ids)}); "
            "add a split.txt (`test <stem>` lines) so both views test on the same tiles."
        )
    return data
