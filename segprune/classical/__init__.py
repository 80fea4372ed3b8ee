"""Classical segmentation baselines, measured exactly like the networks.

Every method separates foreground from background (the shipped nuclei data is binary; on multi-class
data the truth is collapsed to foreground/background and results say so). Clustering methods need a
cluster-to-class mapping: the brightness rule by default, or the ground-truth oracle, always labelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from segprune.classical.clustering import dbscan_segment, kmeans_segment
from segprune.classical.edges import canny_segment, sobel_segment
from segprune.classical.mapping import MAPPINGS, map_by_brightness, map_by_oracle
from segprune.classical.thresholds import otsu_segment, watershed_segment, watershed_split
from segprune.data.dataset import SegmentationDataset
from segprune.metrics import ConfusionMatrix, Evaluation

SEGMENTERS: dict[str, Callable[..., np.ndarray]] = {
    "canny": canny_segment,
    "sobel": sobel_segment,
    "otsu": otsu_segment,
    "watershed": watershed_segment,
}
CLUSTERERS: dict[str, Callable[..., np.ndarray]] = {"kmeans": kmeans_segment, "dbscan": dbscan_segment}
METHODS = (*SEGMENTERS, *CLUSTERERS)


@dataclass(frozen=True)
class ClassicalResult:
    """Scores and speed of one classical method on one split (foreground vs background).

    The `*_interval` fields are `[low, high]` 95% intervals from a bootstrap over the split's images.
    """

    method: str
    mapping: str
    dice: float
    iou: float
    pixel_accuracy: float
    ms_per_image: float
    num_images: int
    collapsed_to_binary: bool
    dice_interval: list[float | None] = field(default_factory=lambda: [None, None])
    iou_interval: list[float | None] = field(default_factory=lambda: [None, None])
    pixel_accuracy_interval: list[float | None] = field(default_factory=lambda: [None, None])

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def segment(
    method: str,
    image: np.ndarray,
    mapping: str = "bright",
    truth: np.ndarray | None = None,
    ignore_index: int | None = None,
    **parameters,
) -> np.ndarray:
    """A 0/1 foreground mask of `image` by a classical method.

    Args:
        method: One of `METHODS`.
        image: (H, W), (H, W, 1) or (H, W, 3), float in [0, 1] or integer.
        mapping: For clustering methods: `"bright"`/`"dark"` (the rule) or `"oracle"` (needs `truth`).
        truth: The true 0/1 mask, for the oracle mapping only.
        ignore_index: Value in `truth` the oracle disregards.
        **parameters: The method's own parameters (see its function).

    Example:
        >>> mask = segment("otsu", image)
    """
    if method in SEGMENTERS:
        mask = SEGMENTERS[method](image, **parameters)
        return (mask > 0).astype(np.int32)
    if method not in CLUSTERERS:
        raise ValueError(f"Unknown classical method {method!r}; choose one of {list(METHODS)}.")
    if mapping not in MAPPINGS:
        raise ValueError(f"Unknown mapping {mapping!r}; choose one of {list(MAPPINGS)}.")
    clusters = CLUSTERERS[method](image, **parameters)
    if mapping == "oracle":
        if truth is None:
            raise ValueError("The oracle mapping needs the true mask (truth=...).")
        return map_by_oracle(clusters, truth, num_classes=2, ignore_index=ignore_index)
    return map_by_brightness(clusters, image, foreground=mapping)


def evaluate_classical(method: str, data: SegmentationDataset, split: str = "test", mapping: str = "bright", **parameters) -> ClassicalResult:
    """Dice, IoU, pixel accuracy (one confusion matrix over the split) and milliseconds per image.

    Example:
        >>> result = evaluate_classical("watershed", segprune.load_data("nuclei"))
        >>> round(result.dice, 2)
        0.8
    """
    matrix = ConfusionMatrix(2, data.ignore_index)
    seconds = 0.0
    ids = data.ids(split)
    for sample_id in ids:
        image, mask = data.load(sample_id)
        truth = (mask > 0).astype(np.int32)
        if data.ignore_index is not None:
            truth[mask == data.ignore_index] = data.ignore_index
        started = time.perf_counter()
        predicted = segment(method, image, mapping, truth=truth, ignore_index=data.ignore_index, **parameters)
        seconds += time.perf_counter() - started
        matrix.update(truth, predicted)
    scores = Evaluation.from_matrix(matrix)
    return ClassicalResult(
        method=method,
        mapping=mapping if method in CLUSTERERS else "none",
        dice=matrix.dice(),
        iou=matrix.iou(),
        pixel_accuracy=matrix.pixel_accuracy(),
        ms_per_image=1000 * seconds / len(ids),
        num_images=len(ids),
        collapsed_to_binary=data.num_classes > 2,
        dice_interval=scores.dice_interval.to_list(),
        iou_interval=scores.iou_interval.to_list(),
        pixel_accuracy_interval=scores.pixel_accuracy_interval.to_list(),
    )


__all__ = [
    "CLUSTERERS",
    "ClassicalResult",
    "METHODS",
    "SEGMENTERS",
    "canny_segment",
    "dbscan_segment",
    "evaluate_classical",
    "kmeans_segment",
    "otsu_segment",
    "segment",
    "sobel_segment",
    "watershed_segment",
    "watershed_split",
]
