"""The CE + Dice loss: small for right answers, blind to ignored pixels, same for logits and probabilities."""

import numpy as np
import pytest
from keras import ops

from segprune.losses import CrossEntropyDiceLoss
from segprune.models.outputs import OutputKind


def _binary_case():
    labels = np.zeros((2, 8, 8), dtype=np.int32)
    labels[:, 2:6, 2:6] = 1
    return labels


def test_binary_loss_prefers_the_right_answer():
    labels = _binary_case()
    loss = CrossEntropyDiceLoss(OutputKind("sigmoid", 1))
    right = labels[..., None] * 0.98 + 0.01
    wrong = 1.0 - right
    assert float(loss(labels, right)) < 0.1 < float(loss(labels, wrong))


def test_logits_and_probabilities_agree():
    labels = _binary_case()
    logits = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    from_logits = CrossEntropyDiceLoss(OutputKind("linear", 1))(labels, logits)
    from_probabilities = CrossEntropyDiceLoss(OutputKind("sigmoid", 1))(labels, ops.sigmoid(logits))
    assert float(from_logits) == pytest.approx(float(from_probabilities), rel=1e-4)


def test_ignored_pixels_do_not_count():
    labels = np.zeros((1, 4, 4), dtype=np.int32)
    labels[0, :2] = 1
    probabilities = np.zeros((1, 4, 4, 3), dtype=np.float32)
    probabilities[..., 0] = 0.9
    probabilities[..., 1] = 0.05
    probabilities[..., 2] = 0.05
    probabilities[0, :2] = [0.05, 0.9, 0.05]
    loss = CrossEntropyDiceLoss(OutputKind("softmax", 3), ignore_index=255)
    base = float(loss(labels, probabilities))
    noisy_labels = labels.copy()
    noisy_labels[0, 3, 3] = 255
    noisy_probabilities = probabilities.copy()
    noisy_probabilities[0, 3, 3] = [0.0, 0.0, 1.0]  # a wrong answer on an ignored pixel
    ignored = float(loss(noisy_labels, noisy_probabilities))
    assert ignored == pytest.approx(base, abs=0.05)
    unignored = float(CrossEntropyDiceLoss(OutputKind("softmax", 3))(labels, noisy_probabilities))
    assert unignored > ignored + 0.5
