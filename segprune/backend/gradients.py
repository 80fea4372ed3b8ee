"""Gradients of a loss with respect to a model's trainable weights, outside `fit`, on every Keras backend.

Keras has no backend-neutral gradient API: TensorFlow records a tape, JAX differentiates a pure function of
the weights (`stateless_call`), PyTorch accumulates `.grad` on the weights' tensors. Each is written once here.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np


def loss_gradients(model: keras.Model, loss: Callable, inputs: np.ndarray, targets: np.ndarray) -> list[np.ndarray]:
    """`d loss(targets, model(inputs, training=False)) / d w` for every `w` in `model.trainable_weights`.

    Args:
        model: A built Keras model.
        loss: A callable `loss(y_true, y_pred)` returning a scalar, written with `keras.ops`.
        inputs: One batch of model inputs.
        targets: The batch's targets.

    Returns:
        One float array per trainable weight, in `model.trainable_weights` order; zeros for a weight the
        loss does not depend on.

    Example:
        >>> gradients = loss_gradients(model, keras.losses.MeanSquaredError(), images, masks)
    """
    backend = keras.backend.backend()
    if backend not in _GRADIENTS:
        raise NotImplementedError(
            f"Gradients are implemented for the {sorted(_GRADIENTS)} Keras backends, not {backend!r}; set KERAS_BACKEND to one of them."
        )
    return _GRADIENTS[backend](model, loss, inputs, targets)


def _tensorflow(model, loss, inputs, targets) -> list[np.ndarray]:
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = loss(targets, model(inputs, training=False))
    gradients = tape.gradient(value, model.trainable_weights)
    return [_numpy_or_zeros(None if g is None else tf.convert_to_tensor(g), v) for g, v in zip(gradients, model.trainable_weights)]


def _jax(model, loss, inputs, targets) -> list[np.ndarray]:
    import jax

    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    def compute(values):
        outputs, _ = model.stateless_call(values, frozen, inputs, training=False)
        return loss(targets, outputs)

    return [np.asarray(g, dtype=np.float32) for g in jax.grad(compute)(trainable)]


def _torch(model, loss, inputs, targets) -> list[np.ndarray]:
    import torch

    parameters = [v.value for v in model.trainable_variables]
    with torch.enable_grad():
        value = loss(targets, model(inputs, training=False))
        # autograd.grad leaves the weights' .grad untouched (a later fit or optimizer step sees no residue)
        gradients = torch.autograd.grad(value, parameters, allow_unused=True)
    return [_numpy_or_zeros(None if g is None else g.detach().cpu(), v) for g, v in zip(gradients, model.trainable_variables)]


def _numpy_or_zeros(gradient, variable) -> np.ndarray:
    if gradient is None:
        return np.zeros(tuple(variable.shape), dtype=np.float32)
    return np.asarray(gradient, dtype=np.float32)


_GRADIENTS = {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}
