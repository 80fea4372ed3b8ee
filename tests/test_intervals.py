"""Bootstrap intervals over test images: the arithmetic on hand-made counts, the paired loss, and determinism."""

import numpy as np
import pytest

from segprune.intervals import (
    RESAMPLES,
    bootstrap_intervals,
    counts_from_matrix,
    paired_loss,
    pooled_scores,
    resample_weights,
)
from segprune.metrics import ConfusionMatrix, Evaluation


def _counts(true_positive, false_positive, false_negative):
    """One image's (3, 2) counts: background first, then the foreground class."""
    return np.array([[0, true_positive], [0, false_positive], [0, false_negative]])


def test_counts_from_a_confusion_matrix_by_hand():
    matrix = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])  # rows: true class; columns: predicted
    np.testing.assert_array_equal(counts_from_matrix(matrix), [[5, 3, 4], [2, 1, 1], [1, 3, 0]])


def test_pooled_scores_equal_the_confusion_matrix_of_the_whole_split():
    rng = np.random.default_rng(3)
    matrix = ConfusionMatrix(4)
    for _ in range(5):
        truth = rng.integers(0, 4, (6, 7))
        matrix.update(truth, np.where(rng.random((6, 7)) < 0.7, truth, rng.integers(0, 4, (6, 7))))
    scores = pooled_scores(matrix.image_counts().sum(axis=0))
    assert scores["dice"] == pytest.approx(matrix.dice())
    assert scores["iou"] == pytest.approx(matrix.iou())
    assert scores["foreground_iou"] == pytest.approx(np.mean(matrix.iou_per_class()[1:]))
    assert scores["pixel_accuracy"] == pytest.approx(matrix.pixel_accuracy())
    np.testing.assert_allclose(scores["dice_per_class"], matrix.dice_per_class())


def test_resampled_sums_are_the_sums_of_the_drawn_images():
    counts = np.random.default_rng(0).integers(0, 50, (5, 3, 2))
    weights = resample_weights(5, resamples=20, seed=7)
    assert weights.shape == (20, 5) and (weights.sum(axis=1) == 5).all()
    drawn = [np.repeat(np.arange(5), row) for row in weights]  # the images each resample holds, with repeats
    by_hand = [pooled_scores(counts[images].sum(axis=0))["dice"] for images in drawn]
    summed = (weights @ counts.reshape(5, 6)).reshape(20, 3, 2)
    np.testing.assert_allclose(pooled_scores(summed)["dice"], by_hand)


def test_identical_images_give_a_zero_width_interval_at_the_score():
    counts = np.stack([_counts(3, 1, 1)] * 6)  # Dice 6/8 on every image, so on every resample
    interval = bootstrap_intervals(counts)["dice"]
    assert (interval.low, interval.high) == pytest.approx((0.75, 0.75)) and interval.num_images == 6


def test_interval_holds_the_score_and_is_the_same_every_time():
    rng = np.random.default_rng(1)
    counts = np.stack([_counts(*rng.integers(1, 40, 3)) for _ in range(12)])
    first, again = bootstrap_intervals(counts)["dice"], bootstrap_intervals(counts)["dice"]
    score = pooled_scores(counts.sum(axis=0))["dice"]
    assert first.low < score < first.high and first == again
    assert bootstrap_intervals(counts, seed=1)["dice"] != first  # the seed, not chance, fixes it


def test_a_model_against_itself_loses_nothing_on_every_resample():
    counts = np.stack([_counts(*np.random.default_rng(i).integers(1, 40, 3)) for i in range(8)])
    loss = paired_loss(counts, counts.copy())
    assert (loss.loss, loss.low, loss.high) == (0.0, 0.0, 0.0)
    assert loss.within(0.0) and not loss.crosses(1.0)


def test_a_constant_loss_on_every_image_is_known_exactly():
    dense = np.stack([_counts(4, 0, 0)] * 5)  # Dice 1 on every image
    pruned = np.stack([_counts(3, 0, 1)] * 5)  # one foreground pixel missed on each: Dice 6/7
    loss = paired_loss(dense, pruned)
    assert (loss.loss, loss.low, loss.high) == pytest.approx((1 / 7, 1 / 7, 1 / 7))
    assert loss.num_images == 5 and not loss.within(14.0) and loss.within(14.3)


def test_pairing_cancels_how_hard_the_drawn_images_are():
    """Images differ widely in difficulty, both models alike: each score's interval is wide, the paired loss's narrow."""
    sizes = np.array([10, 200, 30, 400, 60, 15, 250, 90])
    dense = np.stack([_counts(s, s // 2, s // 2) if i % 2 else _counts(s, s // 10, s // 10) for i, s in enumerate(sizes)])
    pruned = dense.copy()
    pruned[:, 0, 1] -= 1  # one true positive fewer on each image ...
    pruned[:, 2, 1] += 1  # ... missed instead
    dense_interval = bootstrap_intervals(dense)["dice"]
    loss = paired_loss(dense, pruned)
    assert 0 < loss.low <= loss.loss <= loss.high
    assert loss.high - loss.low < (dense_interval.high - dense_interval.low) / 10


def test_counts_of_other_images_are_refused_by_name():
    with pytest.raises(ValueError, match="same images"):
        paired_loss(np.stack([_counts(1, 0, 0)] * 3), np.stack([_counts(1, 0, 0)] * 4))
    with pytest.raises(ValueError, match="Unknown score"):
        paired_loss(np.stack([_counts(1, 0, 0)] * 3), np.stack([_counts(1, 0, 0)] * 3), score="accuracy")


def test_evaluation_keeps_each_images_counts_and_its_intervals():
    matrix = ConfusionMatrix(2)
    matrix.update(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]]))  # foreground TP 1, FN 1
    matrix.update(np.array([[1, 0, 0, 0]]), np.array([[1, 1, 0, 0]]))  # foreground TP 1, FP 1
    evaluation = Evaluation.from_matrix(matrix)
    np.testing.assert_array_equal(evaluation.image_counts[:, :, 1], [[1, 0, 1], [1, 1, 0]])
    assert evaluation.num_images == 2 and evaluation.dice == pytest.approx(4 / 6)
    # the two images alike or both of one kind: Dice 2/3 either way (TP 2, FP+FN 2), so the interval is that point
    assert (evaluation.dice_interval.low, evaluation.dice_interval.high) == pytest.approx((2 / 3, 2 / 3))
    row = evaluation.to_dict()
    assert row["dice_interval"] == pytest.approx([2 / 3, 2 / 3]) and len(row["dice_per_class_interval"]) == 2
    assert "image_counts" not in row and RESAMPLES == 1000
