"""Keras fixes: channels-last sparse cross-entropy trains (and equals its formula) under every backend."""

import keras
import numpy as np

import segprune.models  # noqa: F401  (applies the fixes)
from segprune.backend.gradients import loss_gradients


def test_channels_last_sparse_cross_entropy_has_a_gradient_and_the_right_value():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 4, 4, 1))
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(3, 1, activation="softmax")])
    loss = keras.losses.SparseCategoricalCrossentropy()

    gradients = loss_gradients(model, loss, images, labels)

    probabilities = keras.ops.convert_to_numpy(model(images))
    chosen = np.take_along_axis(probabilities, labels, axis=-1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss(labels, probabilities)), -np.log(chosen).mean(), rtol=1e-5)
    assert all(np.isfinite(g).all() for g in gradients) and np.abs(gradients[0]).sum() > 0
