"""Placeholder initial values: a rebuild whose weights are all assigned next skips the random draws."""

import keras
import numpy as np

from segprune.backend._keras_internals import placeholder_initial_values


def _conv_bn() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, bias_initializer="ones")(inputs)))


def test_random_initializers_start_at_zero_and_constant_ones_keep_their_values():
    with placeholder_initial_values():
        model = _conv_bn()
    conv, norm = model.layers[1], model.layers[2]
    assert not np.any(keras.ops.convert_to_numpy(conv.kernel))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(conv.bias), 1.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(norm.gamma), 1.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(norm.moving_variance), 1.0)


def test_outside_the_block_random_initializers_draw_again_and_the_model_trains():
    with placeholder_initial_values():
        _conv_bn()
    model = _conv_bn()
    assert np.any(keras.ops.convert_to_numpy(model.layers[1].kernel))
    with placeholder_initial_values():
        copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    sample = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(copy(sample)), keras.ops.convert_to_numpy(model(sample)))
    copy.compile(optimizer="sgd", loss="mse")
    copy.fit(sample, np.zeros((2, 6, 6, 4), "float32"), epochs=1, verbose=0)
    assert not np.allclose(copy.get_weights()[0], model.get_weights()[0])
