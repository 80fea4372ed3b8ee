"""Dice, IoU and pixel accuracy, accumulated over a whole split through one confusion matrix, with 95% intervals.

Every score is pooled over the split's pixels; its interval comes from a bootstrap over the split's images
(`segprune.intervals`), for which each image's own counts are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np

from segprune.data.dataset import SegmentationDataset
from segprune.data.python import DataLike, as_dataset
from segprune.inference import DEFAULT_PAD_MULTIPLE, predict_classes
from segprune.intervals import Interval, PairedLoss, bootstrap_intervals, counts_from_matrix, paired_loss
from segprune.models.outputs import OutputKind, output_kind


class ConfusionMatrix:
    """Counts of (true class, predicted class) pixels; pixels at the ignore index are skipped.

    Each `update` is one image: its own counts are kept too (`image_counts`), for the bootstrap.

    Example:
        >>> matrix = ConfusionMatrix(num_classes=2)
        >>> matrix.update(np.array([[0, 1]]), np.array([[0, 1]]))
        >>> matrix.dice()
        1.0
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = np.zeros((num_classes, num_classes), dtype=np.int64)
        self._image_counts: list[np.ndarray] = []

    def update(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        if truth.shape != predicted.shape:
            raise ValueError(f"Mask shapes differ: truth {truth.shape}, prediction {predicted.shape}.")
        truth = truth.ravel().astype(np.int64)
        predicted = predicted.ravel().astype(np.int64)
        keep = truth != self.ignore_index if self.ignore_index is not None else np.ones_like(truth, dtype=bool)
        truth, predicted = truth[keep], predicted[keep]
        if truth.size and (truth.min() < 0 or truth.max() >= self.num_classes):
            raise ValueError(f"A true mask holds class {int(truth.max())}, outside 0..{self.num_classes - 1}.")
        image_matrix = np.bincount(truth * self.num_classes + predicted, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)
        self.counts += image_matrix
        self._image_counts.append(counts_from_matrix(image_matrix))

    def image_counts(self) -> np.ndarray:
        """(updates, 3, C): each update's true positives, false positives and false negatives per class."""
        if not self._image_counts:
            return np.zeros((0, 3, self.num_classes), dtype=np.int64)
        return np.stack(self._image_counts)

    def _per_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        true_positive = np.diag(self.counts).astype(np.float64)
        false_positive = self.counts.sum(axis=0) - true_positive
        false_negative = self.counts.sum(axis=1) - true_positive
        return true_positive, false_positive, false_negative

    def dice_per_class(self) -> np.ndarray:
        """2TP / (2TP + FP + FN) per class; NaN for a class absent from both truth and prediction."""
        tp, fp, fn = self._per_class()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)

    def iou_per_class(self) -> np.ndarray:
        """TP / (TP + FP + FN) per class; NaN for a class absent from both truth and prediction."""
        tp, fp, fn = self._per_class()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)

    def dice(self) -> float:
        """Mean Dice over the foreground classes (1..C-1) present in truth or prediction."""
        return _nanmean(self.dice_per_class()[1:])

    def iou(self) -> float:
        """Mean IoU over all classes, background included, present in truth or prediction."""
        return _nanmean(self.iou_per_class())

    def foreground_iou(self) -> float:
        """Mean IoU over the foreground classes (1..C-1) present in truth or prediction."""
        return _nanmean(self.iou_per_class()[1:])

    def pixel_accuracy(self) -> float:
        total = self.counts.sum()
        return float(np.trace(self.counts) / total) if total else float("nan")


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


_NO_INTERVAL = Interval(math.nan, math.nan, 0)


@dataclass(frozen=True)
class Evaluation:
    """Scores of one model on one split, each with its 95% interval from a bootstrap over the split's images.

    Attributes:
        dice: Mean Dice over foreground classes.
        iou: Mean IoU over all classes, background included.
        iou_per_class: IoU of each class, background first (NaN where a class never occurs).
        dice_per_class: Dice of each class, background first.
        pixel_accuracy: Share of (non-ignored) pixels classified right.
        num_images: Images evaluated.
        num_pixels: Pixels counted (ignored ones excluded).
        foreground_iou: Mean IoU over foreground classes (background excluded, like `dice`).
        image_counts: (images, 3, classes) each image's true positives, false positives, false negatives.
        dice_interval, iou_interval, foreground_iou_interval, pixel_accuracy_interval: 95% intervals.
        dice_per_class_interval, iou_per_class_interval: One interval per class, background first.
    """

    dice: float
    iou: float
    iou_per_class: tuple[float, ...]
    dice_per_class: tuple[float, ...]
    pixel_accuracy: float
    num_images: int
    num_pixels: int
    foreground_iou: float = math.nan
    image_counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 0), np.int64), repr=False, compare=False)
    dice_interval: Interval = _NO_INTERVAL
    iou_interval: Interval = _NO_INTERVAL
    foreground_iou_interval: Interval = _NO_INTERVAL
    pixel_accuracy_interval: Interval = _NO_INTERVAL
    dice_per_class_interval: tuple[Interval, ...] = ()
    iou_per_class_interval: tuple[Interval, ...] = ()

    @classmethod
    def from_matrix(cls, matrix: ConfusionMatrix) -> Evaluation:
        """The scores of `matrix` (one `update` per image) with their bootstrap intervals.

        Example:
            >>> Evaluation.from_matrix(matrix).dice_interval.low
            0.93
        """
        image_counts = matrix.image_counts()
        intervals = bootstrap_intervals(image_counts) if len(image_counts) else {}
        return cls(
            dice=matrix.dice(),
            iou=matrix.iou(),
            iou_per_class=tuple(float(v) for v in matrix.iou_per_class()),
            dice_per_class=tuple(float(v) for v in matrix.dice_per_class()),
            pixel_accuracy=matrix.pixel_accuracy(),
            num_images=len(image_counts),
            num_pixels=int(matrix.counts.sum()),
            foreground_iou=matrix.foreground_iou(),
            image_counts=image_counts,
            dice_interval=intervals.get("dice", _NO_INTERVAL),
            iou_interval=intervals.get("iou", _NO_INTERVAL),
            foreground_iou_interval=intervals.get("foreground_iou", _NO_INTERVAL),
            pixel_accuracy_interval=intervals.get("pixel_accuracy", _NO_INTERVAL),
            dice_per_class_interval=intervals.get("dice_per_class", ()),
            iou_per_class_interval=intervals.get("iou_per_class", ()),
        )

    def loss_against(self, reference: Evaluation, score: str = "dice") -> PairedLoss:
        """`reference`'s score minus this one's, with a paired bootstrap interval over the same images.

        Example:
            >>> pruned_scores.loss_against(dense_scores).high <= 0.01  # within one Dice point, surely
            True
        """
        return paired_loss(reference.image_counts, self.image_counts, score)

    def to_dict(self) -> dict:
        """Every score with its interval as `[low, high]` (NaN as None); the per-image counts are left out."""
        result: dict = {}
        for name in ("dice", "iou", "foreground_iou", "pixel_accuracy"):
            result[name] = _json_float(getattr(self, name))
            result[f"{name}_interval"] = getattr(self, f"{name}_interval").to_list()
        for name in ("dice_per_class", "iou_per_class"):
            result[name] = [_json_float(value) for value in getattr(self, name)]
            result[f"{name}_interval"] = [interval.to_list() for interval in getattr(self, f"{name}_interval")]
        result.update(num_images=self.num_images, num_pixels=self.num_pixels, interval="95% bootstrap over images")
        return result


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def check_fits_data(model: keras.Model, data: SegmentationDataset) -> OutputKind:
    """Refuses a model that is not a single-output segmentation model predicting `data`'s classes; returns
    the output convention it read.

    Raises:
        ValueError: Naming the model's output (or class count) and what it should be.
    """
    kind = output_kind(model)
    if kind.num_classes != data.num_classes:
        raise ValueError(
            f"Model {model.name!r} predicts {kind.num_classes} classes ({kind.channels} output channels) but "
            f"dataset {data.name!r} has {data.num_classes}. If the model is right, read the data with --num-classes "
            f"{kind.num_classes} (num_classes= of load_data; with --ignore-index for a label to skip); if the data is, "
            f"build the model with num_classes={data.num_classes}."
        )
    return kind


def evaluate(
    model: keras.Model,
    data: DataLike,
    split: str = "test",
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
    batch_size: int = 8,
) -> Evaluation:
    """Scores `model` on every image of `split` at full resolution, counting all pixels together.

    Dice, IoU and accuracy come from one confusion matrix over the whole split, not from per-batch
    averages; their 95% intervals from a bootstrap over the split's images (`segprune.intervals`). The
    model may output probabilities or logits (read from its last activation). Arrays or batches as
    `model.evaluate` takes them are scored whole (every image in `split`; `segprune.data.as_dataset`).

    Example:
        >>> result = evaluate(model, segprune.data.load_data("synthetic"), split="test")
        >>> 0.0 <= result.dice <= 1.0
        True
    """
    if not isinstance(data, SegmentationDataset):
        data = as_dataset(data, num_classes=output_kind(model).num_classes, split=split)
    check_fits_data(model, data)
    matrix = ConfusionMatrix(data.num_classes, data.ignore_index)
    ids = data.ids(split)
    for start in range(0, len(ids), batch_size):
        pairs = [data.load(sample_id) for sample_id in ids[start : start + batch_size]]
        predictions = predict_classes(model, [image for image, _ in pairs], pad_multiple, batch_size)
        for (_, mask), predicted in zip(pairs, predictions):
            matrix.update(mask, predicted)
    return Evaluation.from_matrix(matrix)
