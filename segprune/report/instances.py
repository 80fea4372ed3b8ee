"""The report's instance section: a table of the instance rows and every object's outline, in its own colour, on test tiles.

It reads only what the sweep saved (`instances/*.npz`: the tiles, their true label images and each row's
predicted label images); no model runs here.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, as in plots.py
import matplotlib.pyplot as plt
import numpy as np
from skimage.segmentation import find_boundaries

TILES_FILE = "tiles.npz"  # written by segprune.experiments.instances

# Distinct, saturated colours; object k takes colour k mod len (neighbours rarely share one).
_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
     [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200]],
    dtype=np.uint8,
)


def outline_colour(object_id: int) -> np.ndarray:
    """The RGB colour object `object_id` (>= 1) is outlined in."""
    return _PALETTE[(int(object_id) - 1) % len(_PALETTE)]


def outline_overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The image as grey RGB with each object's boundary (its own pixels next to another label) in the object's colour.

    Args:
        image: (height, width) or (height, width, channels), any range (scaled to 0-255 for display).
        labels: (height, width) object ids, 0 = background.

    Returns:
        uint8 (height, width, 3).

    Example:
        >>> outline_overlay(tile, label_image(detections.masks, detections.scores)).shape
        (256, 256, 3)
    """
    labels = np.asarray(labels)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[..., 0] if image.shape[-1] == 1 else image[..., :3]
    if image.shape[:2] != labels.shape:
        raise ValueError(f"The label image is {labels.shape}, its tile {image.shape[:2]}; outlines need one label per pixel.")
    low, high = float(image.min()), float(image.max())
    scaled = np.zeros_like(image) if high <= low else (image - low) / (high - low)
    grey = (255 * scaled).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1) if grey.ndim == 2 else grey.copy()
    boundary = find_boundaries(labels, mode="inner") & (labels > 0)
    rgb[boundary] = _PALETTE[(labels[boundary] - 1) % len(_PALETTE)]
    return rgb


def row_label(row: dict) -> str:
    """How an instance row is named in the report: "Mask R-CNN, l1 at 0.5", "U-Net (oneshot-l1 0.5) + watershed"."""
    method, budget = row["method"], row.get("budget")
    at = "" if budget is None else f" {budget:g}"
    if row["family"] == "mask-rcnn":
        return "Mask R-CNN" if budget is None else f"Mask R-CNN, {method.removeprefix('mask-rcnn-')} at{at}"
    if row["family"] == "unet+watershed":
        network = method.removesuffix("+watershed")
        return "U-Net + watershed" if network == "dense" else f"U-Net ({network}{at}) + watershed"
    return "classical watershed"


def instance_outlines(rows: Sequence[dict], folder: str | Path) -> bytes:
    """A grid as PNG bytes: ground truth, then one line per instance row; one column per saved test tile."""
    tiles = np.load(Path(folder) / TILES_FILE)
    images, truth = tiles["images"], tiles["labels"]
    # long names ("U-Net (oneshot-l1 0.25) + watershed") wrap, so that they stay beside their own line of tiles
    lines = [("ground truth", truth)] + [(row_label(row).replace(" + ", "\n+ "), np.load(row["labels_path"])["labels"]) for row in rows]
    height, width = truth.shape[1:]
    side = max(2.2, max(height, width) / 100)  # at least one screen pixel per tile pixel, so 1-pixel outlines survive
    figure, axes = plt.subplots(len(lines), len(images), figsize=(side * len(images), side * len(lines)), squeeze=False)
    for line, (label, labels) in enumerate(lines):
        for column, image in enumerate(images):
            axis = axes[line][column]
            axis.imshow(outline_overlay(image, labels[column]), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label, fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


_COLUMNS = [
    ("ap", "mask AP", lambda v: f"{v:.3f}"),
    ("ap50", "AP50", lambda v: f"{v:.3f}"),
    ("ap75", "AP75", lambda v: f"{v:.3f}"),
    ("dsb", "DSB score", lambda v: f"{v:.3f}"),
    ("union_dice", "union Dice", lambda v: f"{v:.4f}"),
    ("macs", "MACs (M)", lambda v: "-" if v is None else f"{v / 1e6:.1f}"),
    ("macs_ratio", "MACs ratio", lambda v: "-" if v is None else f"{v:.3f}"),
    ("latency_ms", "ONNX ms", lambda v: "-" if v is None else f"{v:.2f}"),
    ("python_ms_per_image", "Python ms", lambda v: "-" if v is None else f"{v:.1f}"),
]


def _tuning(row: dict) -> str:
    if row["family"] == "classical" or row.get("budget") is None:
        return "-"
    epochs = row.get("finetune_epochs")
    return "none" if not epochs else f"{epochs} epochs, {row.get('finetune_seconds') or 0:.0f} s"


def instance_markdown(rows: Sequence[dict]) -> str:
    """The instance table as markdown (the terminal and `summary.md`), with the report's columns.

    Example:
        >>> print(instance_markdown(result.instance_rows))
    """
    lines = ["| instance method | " + " | ".join(label for _, label, _ in _COLUMNS) + " | fine-tuning |", "|---" * (len(_COLUMNS) + 2) + "|"]
    for row in rows:
        lines.append("| " + " | ".join([row_label(row), *(render(row.get(key)) for key, _, render in _COLUMNS), _tuning(row)]) + " |")
    return "\n".join(lines)


def instance_section(rows: Sequence[dict], notes: Sequence[str] = ()) -> str:
    """The HTML section: what the figures mean, the table, and which rows were not run (with the command that adds them)."""
    if not rows and not notes:
        return ""
    header = "<th>instance method</th>" + "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in _COLUMNS) + "<th>fine-tuning</th>"
    body = "".join(
        "<tr><td>" + html.escape(row_label(row)) + "</td>"
        + "".join(f"<td>{html.escape(render(row.get(key)))}</td>" for key, _, render in _COLUMNS)
        + f"<td>{html.escape(_tuning(row))}</td></tr>"
        for row in rows
    )
    missing = "".join(f'<p class="detail missing-rows">{html.escape(note)}</p>' for note in notes)
    return f"""<h2 id="instances">Instances: one mask per nucleus</h2>
<p class="detail">Mask AP, AP50, AP75: COCO mask average precision (pycocotools) on the test tiles; watershed rows have no scores,
so their AP has a single operating point. DSB score: the 2018 Data Science Bowl score (mean over IoU 0.5-0.95 of TP / (TP + FP + FN)).
Union Dice: all predicted objects against all true ones, as a foreground mask. MACs: per 1 image at the timed size; for Mask R-CNN its
trunk (encoder, FPN, RPN head), whose ratio is to the dense trunk; for U-Net + watershed the U-Net, its ratio to the dense U-Net.
ONNX ms: that network on ONNX Runtime (the U-Nets' from the table above). Python ms: per tile, what runs outside it (the watershed split,
the whole classical method, Mask R-CNN's proposals, NMS, RoIAlign, RoI heads and mask pasting).</p>
{missing}
{"<table><thead><tr>" + header + "</tr></thead><tbody>" + body + "</tbody></table>" if rows else ""}
"""
