"""95% intervals for scores pooled over a split's pixels, from a bootstrap over its images.

A split's Dice, IoU and pixel accuracy come from one confusion matrix summed over its images
(`segprune.metrics`). Each image contributes its per-class counts (true positives, false positives, false
negatives); drawing the images again with replacement and recomputing the pooled score from the summed
counts gives the score's bootstrap distribution, and the interval is its 2.5th and 97.5th percentile.
`RESAMPLES` resamples drawn with `SEED` make an interval a function of the counts alone. The images are
what the split holds: tiles for the nuclei, axial slices for the brain.

A pruned model's loss against dense is paired: both models are scored on the same resampled images, so
which images the test set happens to hold cancels out, and the loss interval is far narrower than the two
score intervals side by side suggest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
SCORES = ("dice", "iou", "foreground_iou", "pixel_accuracy")

# Axis 1 of per-image counts: (true positives, false positives, false negatives) of each class.
TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE = 0, 1, 2


@dataclass(frozen=True)
class Interval:
    """A score's 95% bootstrap interval and the number of images it was drawn from."""

    low: float
    high: float
    num_images: int

    def __str__(self) -> str:
        return f"[{self.low:.4f}, {self.high:.4f}]"

    def to_list(self) -> list[float | None]:
        """`[low, high]` for JSON; an undefined end (no class present in any resample) is None."""
        return [None if np.isnan(value) else float(value) for value in (self.low, self.high)]


@dataclass(frozen=True)
class PairedLoss:
    """How much lower a model scores than a reference on the same images, with its paired 95% interval.

    Attributes:
        score: Which score (`"dice"`, `"iou"`, ...), as a fraction (0.01 is one point).
        loss: Reference score minus this model's, on all images (negative: this model scores higher).
        low: Lower end of the paired interval of the loss.
        high: Upper end.
        num_images: Images both models were scored on.
    """

    score: str
    loss: float
    low: float
    high: float
    num_images: int

    def within(self, tolerance_points: float) -> bool:
        """Whether the whole interval lies within `tolerance_points` points (1.0 = 0.01) of the reference."""
        return bool(self.high <= tolerance_points / 100.0)

    def crosses(self, tolerance_points: float) -> bool:
        """Whether the interval holds both losses within and beyond the tolerance: the data cannot tell which."""
        return bool(self.low <= tolerance_points / 100.0 < self.high)

    def __str__(self) -> str:
        return f"{100 * self.loss:.2f} points [{100 * self.low:.2f}, {100 * self.high:.2f}]"


def counts_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """One image's (3, C) counts from its (C, C) confusion matrix (rows true class, columns predicted)."""
    true_positive = np.diag(matrix)
    return np.stack([true_positive, matrix.sum(axis=0) - true_positive, matrix.sum(axis=1) - true_positive]).astype(np.int64)


def pooled_scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Scores from summed counts of shape (..., 3, C): every leading axis is kept (one resample each).

    Returns:
        `dice` (mean over foreground classes present in truth or prediction), `iou` (mean over all classes
        present, background included, as `ConfusionMatrix.iou`), `foreground_iou` (mean over foreground
        classes present), `pixel_accuracy`, and `dice_per_class`, `iou_per_class` (..., C), NaN where a class
        is absent from both truth and prediction.

    Example:
        >>> pooled_scores(np.array([[3, 2], [1, 2], [2, 1]]))["dice"]  # foreground: TP 2, FP 2, FN 1
        array(0.57142857)
    """
    counts = np.asarray(counts, dtype=np.float64)
    true_positive = counts[..., TRUE_POSITIVE, :]
    errors = counts[..., FALSE_POSITIVE, :] + counts[..., FALSE_NEGATIVE, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(2 * true_positive + errors > 0, 2 * true_positive / (2 * true_positive + errors), np.nan)
        iou = np.where(true_positive + errors > 0, true_positive / (true_positive + errors), np.nan)
        total = true_positive.sum(axis=-1) + counts[..., FALSE_NEGATIVE, :].sum(axis=-1)
        accuracy = np.where(total > 0, true_positive.sum(axis=-1) / total, np.nan)
    return {
        "dice": _nanmean(dice[..., 1:]),
        "iou": _nanmean(iou),
        "foreground_iou": _nanmean(iou[..., 1:]),
        "pixel_accuracy": accuracy,
        "dice_per_class": dice,
        "iou_per_class": iou,
    }


def resample_weights(num_images: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, num_images): how often each image is drawn in each bootstrap resample.

    The same `num_images`, `resamples` and `seed` always give the same draws, so two models scored on the
    same images are resampled alike (the paired bootstrap).
    """
    if num_images < 1:
        raise ValueError(f"A bootstrap needs at least one image, got {num_images}.")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}.")
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=resamples)


def bootstrap_intervals(image_counts: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, object]:
    """The 95% interval of each pooled score (and of each class's Dice and IoU) over resampled images.

    Args:
        image_counts: (images, 3, C) per-image counts (`counts_from_matrix`).
        resamples: Bootstrap resamples.
        seed: Seed of the draws.

    Returns:
        `SCORES` names to an `Interval`, and `dice_per_class` / `iou_per_class` to a tuple of them.

    Example:
        >>> bootstrap_intervals(evaluation.image_counts)["dice"].low
        0.91
    """
    image_counts = _check_counts(image_counts, "image_counts")
    num_images = len(image_counts)
    samples = _resampled_scores(image_counts, resample_weights(num_images, resamples, seed))
    result: dict[str, object] = {name: _percentile_interval(samples[name], num_images) for name in SCORES}
    for name in ("dice_per_class", "iou_per_class"):
        per_class = samples[name]
        result[name] = tuple(_percentile_interval(per_class[:, index], num_images) for index in range(per_class.shape[1]))
    return result


def paired_loss(
    reference_counts: np.ndarray, counts: np.ndarray, score: str = "dice", resamples: int = RESAMPLES, seed: int = SEED
) -> PairedLoss:
    """The reference's score minus this model's, with a paired bootstrap interval over the same images.

    Args:
        reference_counts: (images, 3, C) per-image counts of the reference (dense) model.
        counts: The same images' counts of the other model, in the same order.
        score: One of `SCORES`.
        resamples: Bootstrap resamples.
        seed: Seed of the draws (shared by both models: that is the pairing).

    Example:
        >>> paired_loss(dense.image_counts, dense.image_counts).high  # a model against itself
        0.0
    """
    if score not in SCORES:
        raise ValueError(f"Unknown score {score!r}; choose one of {list(SCORES)}.")
    reference_counts = _check_counts(reference_counts, "reference_counts")
    counts = _check_counts(counts, "counts")
    if reference_counts.shape != counts.shape:
        raise ValueError(
            f"A paired loss needs both models' counts on the same images: reference {reference_counts.shape}, other {counts.shape} "
            "(images, 3, classes). Score both on the same split of the same data."
        )
    weights = resample_weights(len(counts), resamples, seed)
    losses = _resampled_scores(reference_counts, weights)[score] - _resampled_scores(counts, weights)[score]
    loss = float(pooled_scores(reference_counts.sum(axis=0))[score] - pooled_scores(counts.sum(axis=0))[score])
    interval = _percentile_interval(losses, len(counts))
    return PairedLoss(score, loss, interval.low, interval.high, len(counts))


def _resampled_scores(image_counts: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    num_images, _, num_classes = image_counts.shape
    summed = weights @ image_counts.reshape(num_images, 3 * num_classes)  # one weighted sum of counts per resample
    return pooled_scores(summed.reshape(len(weights), 3, num_classes))


def _percentile_interval(samples: np.ndarray, num_images: int) -> Interval:
    samples = samples[~np.isnan(samples)]
    if not samples.size:
        return Interval(float("nan"), float("nan"), num_images)
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(low), float(high), num_images)


def _nanmean(values: np.ndarray) -> np.ndarray:
    present = ~np.isnan(values)
    total = np.where(present, values, 0.0).sum(axis=-1)
    count = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _check_counts(counts: np.ndarray, name: str) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 3 or counts.shape[1] != 3 or len(counts) == 0:
        raise ValueError(f"{name} must be per-image counts of shape (images >= 1, 3, classes), got shape {counts.shape}.")
    return counts
