"""The one backend-specific piece of training: differentiating a loss function (TensorFlow's GradientTape)."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def losses_and_gradients(compute_losses: Callable[[], dict], variables: Sequence) -> tuple[dict, list]:
    """Runs `compute_losses()` (a dict of scalar tensors) and returns it with d(sum of losses)/d(variables)."""
    import tensorflow as tf  # imported when used: segprune itself imports under every backend

    with tf.GradientTape() as tape:
        losses = compute_losses()
        total = tf.add_n(list(losses.values()))
    return losses, tape.gradient(total, list(variables))
