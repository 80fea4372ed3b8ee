"""A callback that reads and assigns weights mid-epoch sees and sets the training state under every backend."""

import keras
import numpy as np

from segprune.backend.mid_fit_sync import sync_variables_mid_fit


class _ReadThenSet(keras.callbacks.Callback):
    def __init__(self, model: keras.Model) -> None:
        super().__init__()
        self.target = model
        self.read = None

    def on_train_batch_begin(self, batch, logs=None):
        if batch != 1:
            return
        sync_variables_mid_fit(self.target)
        kernel = self.target.layers[0].kernel
        self.read = keras.ops.convert_to_numpy(kernel).copy()
        kernel.assign(np.full(tuple(kernel.shape), 3.0, "float32"))


def test_a_weight_assigned_mid_epoch_is_the_one_trained():
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")  # no learning: weights change only by the callback
    initial = keras.ops.convert_to_numpy(model.layers[0].kernel).copy()
    callback = _ReadThenSet(model)

    model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), batch_size=2, epochs=1, verbose=0, callbacks=[callback])

    np.testing.assert_array_equal(callback.read, initial)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.layers[0].kernel), np.full((3, 2), 3.0))
