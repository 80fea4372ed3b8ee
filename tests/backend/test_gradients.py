"""Loss gradients outside `fit` agree with the hand-derived gradient under every backend."""

import keras
import numpy as np

from segprune.backend.gradients import loss_gradients


def test_gradient_of_a_linear_model_under_mean_squared_error():
    """y = x w + b under MSE over N rows: dL/dw = 2/N x^T (y - t), dL/db = 2/N sum(y - t)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3)).astype("float32")
    targets = rng.normal(size=(6, 1)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.layers[0].set_weights([rng.normal(size=(3, 1)).astype("float32"), np.array([0.5], "float32")])
    kernel, bias = model.layers[0].get_weights()
    residual = x @ kernel + bias - targets

    gradients = loss_gradients(model, keras.losses.MeanSquaredError(), x, targets)

    np.testing.assert_allclose(gradients[0], 2 / 6 * x.T @ residual, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradients[1], 2 / 6 * residual.sum(axis=0), rtol=1e-5, atol=1e-6)


def test_a_weight_the_loss_ignores_gets_zeros_and_nothing_accumulates():
    inputs = keras.Input((2,))
    used = keras.layers.Dense(1, name="used")(inputs)
    model = keras.Model(inputs, used)
    stray = model.add_weight(shape=(4,), initializer="ones", name="stray")
    x, targets = np.ones((2, 2), "float32"), np.zeros((2, 1), "float32")

    first = loss_gradients(model, keras.losses.MeanSquaredError(), x, targets)
    second = loss_gradients(model, keras.losses.MeanSquaredError(), x, targets)

    assert [g.shape for g in first] == [tuple(v.shape) for v in model.trainable_weights]
    np.testing.assert_array_equal(first[[v.path for v in model.trainable_weights].index(stray.path)], np.zeros(4))
    for a, b in zip(first, second):  # nothing accumulates between calls (PyTorch's .grad)
        np.testing.assert_array_equal(a, b)
