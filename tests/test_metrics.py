"""Dice, IoU and pixel accuracy against hand-computed masks, and whole-split evaluation."""

import keras
import numpy as np
import pytest

from segprune.data import SegmentationDataset
from segprune.metrics import ConfusionMatrix, evaluate


def test_binary_counts_by_hand():
    truth = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    predicted = np.array([[1, 0, 0, 0], [1, 1, 1, 0]])
    matrix = ConfusionMatrix(2)
    matrix.update(truth, predicted)
    # foreground: TP 2, FP 2, FN 1; background: TP 3, FP 1, FN 2
    assert matrix.dice() == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    np.testing.assert_allclose(matrix.iou_per_class(), [3 / 6, 2 / 5])
    assert matrix.iou() == pytest.approx((3 / 6 + 2 / 5) / 2)
    assert matrix.pixel_accuracy() == pytest.approx(5 / 8)


def test_multiclass_absent_class_is_excluded_from_the_mean():
    truth = np.array([[0, 1, 1, 2]])
    predicted = np.array([[0, 1, 2, 2]])
    matrix = ConfusionMatrix(4)
    matrix.update(truth, predicted)
    dice = matrix.dice_per_class()
    assert np.isnan(dice[3])
    assert matrix.dice() == pytest.approx(np.mean([2 / 3, 2 / 3]))


def test_ignore_index_is_skipped():
    truth = np.array([[255, 1, 0]])
    predicted = np.array([[1, 1, 0]])
    matrix = ConfusionMatrix(2, ignore_index=255)
    matrix.update(truth, predicted)
    assert matrix.counts.sum() == 2
    assert matrix.dice() == 1.0


def test_accumulates_over_images_not_per_image_mean():
    matrix = ConfusionMatrix(2)
    matrix.update(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))  # Dice 1 alone
    matrix.update(np.array([[1, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))  # Dice 0 alone
    assert matrix.dice() == pytest.approx(8 / 9)  # 2*4 / (2*4 + 0 + 1), not (1 + 0) / 2


def _threshold_model(from_logits: bool, channels: int) -> keras.Model:
    """A model that reads the class straight off the image: pixel value 1 means foreground."""
    inputs = keras.Input((None, None, 1))
    if channels == 1:
        score = keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer=keras.initializers.Constant(-0.5))(inputs)
        outputs = score if from_logits else keras.layers.Activation("sigmoid")(score)
    else:
        score = keras.layers.Conv2D(2, 1)(inputs)
        outputs = score if from_logits else keras.layers.Softmax()(score)
    model = keras.Model(inputs, outputs)
    if channels == 2:
        model.layers[1].set_weights([np.array([[[[-1.0, 1.0]]]]), np.array([0.5, -0.5])])
    return model


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("channels", [1, 2])
def test_evaluate_reads_probabilities_and_logits(from_logits, channels):
    masks = {f"m{i}": (np.random.default_rng(i).random((20 + 4 * i, 36)) > 0.6).astype(np.int32) for i in range(3)}
    data = SegmentationDataset(
        "masks-as-images", 2, 1, {"test": list(masks)}, lambda key: (masks[key][..., None].astype(np.float32), masks[key])
    )
    result = evaluate(_threshold_model(from_logits, channels), data, "test")
    assert result.dice == pytest.approx(1.0)
    assert result.pixel_accuracy == pytest.approx(1.0)
    assert result.num_images == 3
    assert result.num_pixels == sum(mask.size for mask in masks.values())
    # each image's own counts are kept, in split order, and every resample of perfect images is perfect
    foreground = [int(masks[key].sum()) for key in masks]
    np.testing.assert_array_equal(result.image_counts[:, :, 1], [[count, 0, 0] for count in foreground])
    assert (result.dice_interval.low, result.dice_interval.high, result.dice_interval.num_images) == (1.0, 1.0, 3)


def test_evaluate_refuses_a_class_count_mismatch():
    data = SegmentationDataset("four", 4, 1, {"test": ["a"]}, lambda key: (np.zeros((8, 8, 1), np.float32), np.zeros((8, 8), np.int32)))
    with pytest.raises(ValueError, match="num_classes=4"):
        evaluate(_threshold_model(False, 1), data, "test")
