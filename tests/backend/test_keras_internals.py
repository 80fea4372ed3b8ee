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


class ConvBlock(keras.layers.Layer):
    """A composite layer (sublayers only, no weights of its own), as keras-hub writes its blocks."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(filters, 3, padding="same")
        self.relu = keras.layers.ReLU()

    def call(self, x):
        return self.relu(self.conv(x))


class Stage(keras.layers.Layer):
    """A composite of composites: its trace is flattened in turn, and that copy is what the cache holds."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.first = ConvBlock(filters)
        self.second = ConvBlock(filters)

    def call(self, x):
        return self.second(self.first(x))


def test_flattening_maps_each_traced_composite_to_its_own_copy_even_when_addresses_are_reused(monkeypatch):
    # A traced composite is freed once flattened, and CPython may give the next one its address: a cache keyed
    # by id() then answered a stage's trace with the stem's copy (seen in CI on keras-hub's HGNetV2). Every id()
    # colliding is the extreme of that reuse.
    from segprune.backend import _keras_internals

    inputs = keras.Input((8, 8, 3))
    outputs = Stage(4, name="stage")(Stage(6, name="stem")(inputs))
    model = keras.Model(inputs, outputs)
    monkeypatch.setattr(_keras_internals, "id", lambda obj: 0, raising=False)
    flat = _keras_internals.plain_functional(model, expand=lambda layer: isinstance(layer, (ConvBlock, Stage)))
    sample = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(flat.predict(sample, verbose=0), model.predict(sample, verbose=0), atol=1e-6)
    convs = [layer for layer in _keras_internals.all_sublayers(flat) if isinstance(layer, keras.layers.Conv2D)]
    expected = [block.conv for stage in model.layers[1:] for block in (stage.first, stage.second)]
    assert sorted(layer.name for layer in convs) == sorted(layer.name for layer in expected)
