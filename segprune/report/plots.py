"""Figures of a sweep as PNG bytes: Pareto plots and prediction overlays."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import keras
import matplotlib.pyplot as plt
import numpy as np

from segprune.classical import segment
from segprune.data.dataset import SegmentationDataset
from segprune.inference import predict_classes


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def pareto_plot(rows: list[dict], x_key: str, x_label: str, balance: dict | None) -> bytes:
    """Dice against `x_key` for every network row, the Pareto front drawn, the balance point starred."""
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
        axis.scatter([balance[x_key]], [balance["dice"]], marker="*", s=250, color="gold", edgecolors="black", zorder=5, label="balance point")
    for row in rows:
        if row["method"].startswith("classical-"):
            axis.axhline(row["dice"], color="lightgrey", linewidth=0.8)
            axis.annotate(row["method"], (axis.get_xlim()[1], row["dice"]), fontsize=7, ha="right", va="bottom", color="grey")
    axis.set_xlabel(x_label)
    axis.set_ylabel("test Dice")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    return _png(figure)


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    front, best = [], -np.inf
    for cost, dice in sorted(points):
        if dice > best:
            front.append((cost, dice))
            best = dice
    return front


def overlays(rows: list[dict], data: SegmentationDataset, num_images: int = 3) -> bytes:
    """A grid: one row per method (ground truth first), one column per test image, masks over images."""
    ids = data.ids("test")[:num_images]
    pairs = [data.load(sample_id) for sample_id in ids]
    images = [image for image, _ in pairs]
    predictions = [("ground truth", [mask for _, mask in pairs])]
    for row in rows:
        if row["model_path"]:
            model = keras.saving.load_model(row["model_path"])
            predictions.append((_label(row), predict_classes(model, images)))
        elif row["method"].startswith("classical-"):
            name = row["method"].removeprefix("classical-")
            predictions.append((row["method"], [segment(name, image) for image in images]))
    figure, axes = plt.subplots(len(predictions), len(images), figsize=(2.2 * len(images), 2.2 * len(predictions)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for row_index, (label, masks) in enumerate(predictions):
        for column, (image, mask) in enumerate(zip(images, masks)):
            axis = axes[row_index][column]
            axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
            overlay = np.zeros((*mask.shape, 4))
            for class_index in range(1, int(max(mask.max(), 1)) + 1):
                overlay[mask == class_index] = (*colours(class_index - 1)[:3], 0.45)
            axis.imshow(overlay)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label, fontsize=7)
    return _png(figure)


def _label(row: dict) -> str:
    return row["method"] if row["budget"] is None else f"{row['method']} {row['budget']}"
