"""Reading and changing a model's weights from a callback in the middle of `fit`, on every Keras backend.

TensorFlow and PyTorch train the variables in place. JAX's trainer takes the weights (and the optimizer's
slots) out of the variables at the start of an epoch, carries them through its jitted steps and writes them
back only at the epoch's end: mid-epoch the variables are empty. Syncing writes the current state back and
marks it so that the trainer reads the variables again before its next step, so what a callback assigns is
what that step trains.
"""

from __future__ import annotations

import keras


def sync_variables_mid_fit(model: keras.Model) -> None:
    """Makes `model`'s variables (and its optimizer's) hold the training state of the step in progress.

    Call it from a callback before reading or assigning weights or optimizer slots mid-epoch; a no-op outside
    `fit` and on backends that train the variables in place.

    Example:
        >>> class Zeroing(keras.callbacks.Callback):
        ...     def on_train_batch_begin(self, batch, logs=None):
        ...         sync_variables_mid_fit(model)
        ...         model.layers[1].kernel.assign(keras.ops.zeros_like(model.layers[1].kernel))
    """
    if keras.backend.backend() == "jax":
        model.jax_state_sync()  # the JAX trainer's own sync (a no-op when nothing is pending)
