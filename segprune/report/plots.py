"""Figures of a sweep as PNG bytes: Pareto plots and prediction overlays that show where each network is wrong."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import keras
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from segprune.classical import segment
from segprune.data.dataset import SegmentationDataset
from segprune.inference import predict_classes


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


# Errors in the overlays, opaque so they read at a glance and stay apart from the translucent class colours
# (tab10: blue, orange, green, ...): magenta where a network marks what is not there, cyan where it misses.
FALSE_POSITIVE = (1.0, 0.0, 1.0)
FALSE_NEGATIVE = (0.0, 1.0, 1.0)
WRONG_CLASS = (1.0, 0.85, 0.0)  # foreground of another class (multi-class data)
CLASS_ALPHA = 0.45


def pareto_plot(rows: list[dict], x_key: str, x_label: str, balance: dict | None) -> bytes:
    """Dice against `x_key` for every network row, the Pareto front drawn, the balance point ringed.

    The ring is hollow and wider than the points, so the point it marks stays visible under it.
    """
    networks = [row for row in rows if row.get(x_key) is not None and row["model_path"]]
    figure, axis = plt.subplots(figsize=(6, 4))
    methods = sorted({row["method"] for row in networks})
    for method in methods:
        points = [(row[x_key], row["dice"]) for row in networks if row["method"] == method]
        axis.scatter(*zip(*points), label=method, s=40)
    front = _pareto_front([(row[x_key], row["dice"]) for row in networks])
    if len(front) > 1:
        axis.plot(*zip(*front), color="grey", linestyle="--", linewidth=1, label="Pareto front")
    if balance is not None and balance.get(x_key) is not None:
        axis.scatter([balance[x_key]], [balance["dice"]], marker="o", s=260, facecolors="none", edgecolors="black", linewidths=1.8,
                     zorder=5, label="balance point (ringed)")
    for row in rows:
        if row["method"].startswith("classical-"):
            axis.axhline(row["dice"], color="lightgrey", linewidth=0.8)
            axis.annotate(row["method"], (axis.get_xlim()[1], row["dice"]), fontsize=7, ha="right", va="bottom", color="grey")
    axis.set_xlabel(x_label)
    axis.set_ylabel("test Dice")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: it hides no point and no reference line
    return _png(figure)


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    front, best = [], -np.inf
    for cost, dice in sorted(points):
        if dice > best:
            front.append((cost, dice))
            best = dice
    return front


def overlays(rows: list[dict], data: SegmentationDataset, num_images: int = 3) -> bytes:
    """A grid: one row per method (ground truth first), one column per test image, masks over images.

    Under the ground truth, each prediction shows its correct foreground in the class colours and its errors
    opaque: false positives (foreground where the truth has background) magenta, false negatives (truth
    foreground predicted as background) cyan, and on multi-class data foreground of the wrong class yellow. A
    legend above the grid says so. Pixels the dataset ignores are left uncoloured.
    """
    ids = data.ids("test")[:num_images]
    pairs = [data.load(sample_id) for sample_id in ids]
    images = [image for image, _ in pairs]
    truths = [mask for _, mask in pairs]
    predictions = []
    for row in rows:
        if row["model_path"]:
            model = keras.saving.load_model(row["model_path"])
            predictions.append((_label(row), predict_classes(model, images), False))
        elif row["method"].startswith("classical-"):
            name = row["method"].removeprefix("classical-")
            predictions.append((row["method"], [segment(name, image) for image in images], True))  # 0/1 foreground masks
    figure, axes = plt.subplots(len(predictions) + 1, len(images), figsize=(2.2 * len(images), 2.2 * (len(predictions) + 1)), squeeze=False)
    colours = plt.get_cmap("tab10")
    multi_class = data.num_classes > 2
    for row_index, (label, masks, binary) in enumerate([("ground truth", truths, False), *predictions]):
        for column, (image, mask, truth) in enumerate(zip(images, masks, truths)):
            axis = axes[row_index][column]
            axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
            overlay = np.zeros((*mask.shape, 4))
            for class_index in np.unique(mask):
                if class_index not in (0, data.ignore_index):
                    overlay[mask == class_index] = (*colours(int(class_index) - 1)[:3], CLASS_ALPHA)
            if row_index:
                _mark_errors(overlay, mask, truth, data.ignore_index, binary)
            axis.imshow(overlay, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label, fontsize=7)
    legend = [Patch(color=(*colours(0)[:3], CLASS_ALPHA), label="correct foreground"),
              Patch(color=FALSE_POSITIVE, label="false positive (marked, not there)"),
              Patch(color=FALSE_NEGATIVE, label="false negative (missed)")]
    if multi_class:
        legend.append(Patch(color=WRONG_CLASS, label="wrong class"))
    figure.legend(handles=legend, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=7, frameon=False)
    figure.tight_layout()
    return _png(figure)


def error_masks(prediction: np.ndarray, truth: np.ndarray, ignore_index: int | None = None, binary: bool = False) -> dict[str, np.ndarray]:
    """Where `prediction` is wrong: `false_positive`, `false_negative` and `wrong_class` boolean masks.

    `binary` compares foreground with foreground only (a classical method's 0/1 masks on multi-class truth).

    Example:
        >>> error_masks(np.array([[1, 0]]), np.array([[0, 1]]))["false_positive"]
        array([[ True, False]])
    """
    counted = np.ones(truth.shape, bool) if ignore_index is None else truth != ignore_index
    predicted, present = (prediction > 0) & counted, (truth > 0) & counted
    wrong_class = np.zeros(truth.shape, bool) if binary else predicted & present & (prediction != truth)
    return {"false_positive": predicted & ~present, "false_negative": present & ~predicted, "wrong_class": wrong_class}


def _mark_errors(overlay: np.ndarray, prediction: np.ndarray, truth: np.ndarray, ignore_index: int | None, binary: bool) -> None:
    errors = error_masks(prediction, truth, ignore_index, binary)
    if ignore_index is not None:
        overlay[truth == ignore_index] = 0.0
    for name, colour in (("false_positive", FALSE_POSITIVE), ("false_negative", FALSE_NEGATIVE), ("wrong_class", WRONG_CLASS)):
        overlay[errors[name]] = (*colour, 1.0)


def _label(row: dict) -> str:
    return row["method"] if row["budget"] is None else f"{row['method']} {row['budget']}"
