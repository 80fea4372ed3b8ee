"""Distillation: the loss matches a hand computation, weight 0 is plain training, the teacher never trains."""

import keras
import numpy as np
import pytest

from segprune.data import BatchConfig, TrainingBatches, synthetic_dataset
from segprune.losses import CrossEntropyDiceLoss, DistillationLoss, soft_predictions
from segprune.models import unet
from segprune.models.outputs import OutputKind
from segprune.training import DistillConfig, TrainConfig, train

FAST = TrainConfig(learning_rate=3e-3, batches=BatchConfig(batch_size=4, image_size=32, samples_per_epoch=16))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_binary_loss_equals_the_hand_computed_value():
    labels = np.array([[[1, 0]]], dtype=np.int32)  # one image of 1x2 pixels
    student = np.array([[[[0.8], [0.3]]]], dtype=np.float32)
    teacher = np.array([[[[0.9], [0.2]]]], dtype=np.float32)
    temperature, weight = 2.0, 0.25
    kind = OutputKind("sigmoid", 1)
    teacher_soft = soft_predictions(teacher, kind, temperature)
    targets = np.concatenate([labels[..., None].astype(np.float32), np.asarray(teacher_soft)], axis=-1)
    loss = float(DistillationLoss(kind, temperature=temperature, weight=weight)(targets, student))

    def soft(p):
        return _sigmoid(np.log(p / (1 - p)) / temperature)

    s, t = soft(student[..., 0]), soft(teacher[..., 0])
    kl = np.mean(t * np.log(t / s) + (1 - t) * np.log((1 - t) / (1 - s)))
    task = float(CrossEntropyDiceLoss(kind)(labels, student))
    assert loss == pytest.approx((1 - weight) * task + weight * temperature**2 * kl, rel=1e-5)


def test_multi_class_loss_equals_the_hand_computed_value_and_skips_ignored_pixels():
    labels = np.array([[[2, 255]]], dtype=np.int32)
    student = np.array([[[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]]], dtype=np.float32)
    teacher = np.array([[[[0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]]], dtype=np.float32)
    temperature = 3.0
    kind = OutputKind("softmax", 3)
    targets = np.concatenate([labels[..., None].astype(np.float32), np.asarray(soft_predictions(teacher, kind, temperature))], -1)
    loss = float(DistillationLoss(kind, ignore_index=255, temperature=temperature, weight=1.0)(targets, student))

    def soft(p):
        z = np.log(p) / temperature
        return np.exp(z) / np.exp(z).sum()

    s, t = soft(student[0, 0, 0]), soft(teacher[0, 0, 0])  # the second pixel is ignored
    assert loss == pytest.approx(temperature**2 * np.sum(t * np.log(t / s)), rel=1e-5)


def test_soft_predictions_agree_for_logits_and_probabilities_and_temperature_one_is_identity():
    logits = np.random.default_rng(0).normal(size=(1, 4, 4, 3)).astype(np.float32)
    probabilities = np.asarray(keras.ops.softmax(logits, axis=-1))
    from_logits = soft_predictions(logits, OutputKind("linear", 3), 2.0)
    from_probabilities = soft_predictions(probabilities, OutputKind("softmax", 3), 2.0)
    np.testing.assert_allclose(from_logits, from_probabilities, atol=1e-5)
    np.testing.assert_allclose(soft_predictions(probabilities, OutputKind("softmax", 3), 1.0), probabilities, atol=1e-5)


def test_a_student_that_matches_its_teacher_pays_no_distillation():
    labels = np.array([[[1, 0]]], dtype=np.int32)
    outputs = np.array([[[[0.7], [0.4]]]], dtype=np.float32)
    kind = OutputKind("sigmoid", 1)
    targets = np.concatenate([labels[..., None].astype(np.float32), np.asarray(soft_predictions(outputs, kind, 4.0))], -1)
    assert float(DistillationLoss(kind, temperature=4.0, weight=1.0)(targets, outputs)) == pytest.approx(0.0, abs=1e-5)


@pytest.fixture(scope="module")
def tiny_data():
    return synthetic_dataset(num_train=8, num_val=2, num_test=2, image_size=32, channels=1)


def _trained(data, seed, **distillation):
    keras.utils.set_random_seed(seed)
    model = unet(num_classes=data.num_classes, input_channels=1, base_filters=4, depth=1)
    train(model, data, epochs=2, config=FAST, **distillation)
    return model


def test_weight_zero_is_plain_training_and_the_teacher_never_trains(tiny_data):
    keras.utils.set_random_seed(1)
    teacher = unet(num_classes=tiny_data.num_classes, input_channels=1, base_filters=4, depth=1)
    teacher_before = [weight.copy() for weight in teacher.get_weights()]
    plain = _trained(tiny_data, 0)
    distilled = _trained(tiny_data, 0, teacher=teacher, distill=DistillConfig(temperature=2.0, weight=0.0))
    for ours, theirs in zip(distilled.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    pulled = _trained(tiny_data, 0, teacher=teacher, distill=DistillConfig(temperature=2.0, weight=0.9))
    assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(pulled.get_weights(), plain.get_weights()))
    for before, after in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_bad_settings_say_what_is_wrong(tiny_data):
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=0.0)
    with pytest.raises(ValueError, match="share"):
        DistillConfig(weight=1.5)
    student = unet(num_classes=tiny_data.num_classes, input_channels=1, base_filters=4, depth=1)
    with pytest.raises(ValueError, match="teacher="):
        train(student, tiny_data, epochs=1, config=FAST, distill=DistillConfig())
    binary_teacher = unet(num_classes=2, input_channels=1, base_filters=4, depth=1)
    with pytest.raises(ValueError, match="channel"):
        train(student, tiny_data, epochs=1, config=FAST, teacher=binary_teacher)


@pytest.mark.parametrize("size_mode", ["crop", "resize"])
def test_soft_targets_travel_with_the_mask_through_crops_flips_and_turns(size_mode):
    data = synthetic_dataset(num_train=4, num_val=1, num_test=1, image_size=40, channels=1)
    # a "teacher" whose soft mask is the foreground itself: after any crop, flip or turn the two must still agree
    soft = {sample_id: (mask > 0).astype(np.float32)[..., None] for sample_id, _, mask in data.samples("train")}
    config = BatchConfig(batch_size=4, image_size=32, size_mode=size_mode, samples_per_epoch=8)
    images, targets = TrainingBatches(data, "train", 1, config, soft_targets=soft)[0]
    assert images.shape == (4, 32, 32, 1) and targets.shape == (4, 32, 32, 2) and targets.dtype == np.float32
    agreement = np.mean((targets[..., 1] > 0.5) == (targets[..., 0] > 0))
    assert agreement == 1.0 if size_mode == "crop" else agreement > 0.98  # resizing: bilinear vs nearest at borders
    plain_images, masks = TrainingBatches(data, "train", 1, config)[0]
    np.testing.assert_array_equal(plain_images, images)
    np.testing.assert_array_equal(masks, targets[..., 0])
