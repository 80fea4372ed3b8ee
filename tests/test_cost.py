"""MACs and parameters against hand-computed values for each counted layer kind."""

import keras
import pytest

from segprune import flops
from segprune.models import unet


def _single_layer(layer, input_shape):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


@pytest.mark.parametrize(
    "layer,input_shape,expected_macs",
    [
        (keras.layers.Conv2D(8, 3, padding="same"), (16, 16, 4), 16 * 16 * 8 * 3 * 3 * 4),
        (keras.layers.Conv2D(8, 3, strides=2, padding="valid"), (17, 17, 4), 8 * 8 * 8 * 9 * 4),
        (keras.layers.Conv2D(8, 3, padding="same", groups=2), (16, 16, 4), 16 * 16 * 8 * 9 * 2),
        (keras.layers.Conv2DTranspose(6, 2, strides=2), (8, 8, 4), 8 * 8 * 2 * 2 * 4 * 6),
        (keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2), (10, 10, 4), 10 * 10 * 8 * 9),
        (keras.layers.SeparableConv2D(5, 3, padding="same"), (10, 10, 4), 10 * 10 * 4 * 9 + 10 * 10 * 4 * 5),
        (keras.layers.Dense(7), (12,), 12 * 7),
        (keras.layers.Dense(7), (3, 12), 3 * 12 * 7),
        (keras.layers.MaxPooling2D(), (8, 8, 4), 0),
    ],
)
def test_layer_macs(layer, input_shape, expected_macs):
    model = _single_layer(layer, input_shape)
    report = flops(model, input_shape)
    assert report.macs == expected_macs
    assert report.params == model.count_params()


def test_batchnorm_and_pooling_are_counted_separately():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.BatchNormalization()(inputs)
    x = keras.layers.MaxPooling2D()(x)
    report = flops(keras.Model(inputs, x), (8, 8, 4))
    assert report.macs == 0
    assert report.other_ops == 2 * 8 * 8 * 4 + 4 * 4 * 4 * 4
    assert report.params == 16


def test_nested_models_are_entered_and_shared_layers_counted_per_call():
    inner_input = keras.Input((None, None, 3))
    inner = keras.Model(inner_input, keras.layers.Conv2D(4, 1, name="inner_conv")(inner_input), name="encoder")
    shared = keras.layers.Conv2D(4, 1, name="shared")
    inputs = keras.Input((None, None, 3))
    x = inner(inputs)
    y = shared(shared(x))
    model = keras.Model(inputs, y)
    report = flops(model, (10, 10))
    names = [layer.name for layer in report.layers]
    assert "encoder/inner_conv" in names
    assert names.count("shared") == 2
    assert report.macs == 100 * 3 * 4 + 2 * 100 * 4 * 4
    assert report.params == model.count_params()


def test_unet_total_by_hand():
    model = unet(num_classes=2, input_channels=1, base_filters=4, depth=1, batch_norm=False)
    size = 8
    expected = (
        size * size * 4 * 9 * 1  # enc0a
        + size * size * 4 * 9 * 4  # enc0b
        + (size // 2) ** 2 * 8 * 9 * 4  # mid_a
        + (size // 2) ** 2 * 8 * 9 * 8  # mid_b
        + (size // 2) ** 2 * 4 * 8 * 4  # dec0_up: transpose 2x2 from 8 to 4 channels on the 4x4 input
        + size * size * 4 * 9 * 8  # dec0a over the concatenation
        + size * size * 4 * 9 * 4  # dec0b
        + size * size * 1 * 4  # head
    )
    report = flops(model, (size, size))
    assert report.macs == expected
    assert report.params == model.count_params()


def test_bad_input_shape():
    with pytest.raises(ValueError, match="does not fit"):
        flops(unet(input_channels=1), (32, 32, 3))


def test_bare_operations_in_the_graph_are_counted_without_parameters():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 1)(inputs)
    x = keras.layers.ReLU()(x + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard-sigmoid, written with bare ops
    model = keras.Model(inputs, x)
    report = flops(model, (8, 8))
    assert report.macs == 8 * 8 * 4 * 3
    assert report.params == model.count_params()


class _ConvPair(keras.layers.Layer):
    """A composite layer: two 1x1 convolutions run in its call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Conv2D(4, 1)
        self.second = keras.layers.Conv2D(2, 1)

    def build(self, input_shape):
        self.first.build(input_shape)
        self.second.build((*input_shape[:-1], 4))

    def call(self, inputs):
        return self.second(keras.ops.relu(self.first(inputs)))


class _Opaque(keras.layers.Layer):
    """A custom layer segprune cannot see into (its call is no composition of sublayers)."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=1)


def test_composite_layers_are_priced_by_the_layers_they_run():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, _ConvPair()(keras.layers.Conv2D(3, 1)(inputs)))
    assert flops(model, (8, 8)).macs == 8 * 8 * (3 * 3 + 4 * 3 + 2 * 4)


def test_an_opaque_custom_layer_is_priced_by_what_can_be_seen():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(_Opaque()(keras.layers.Conv2D(3, 1)(inputs))))
    assert flops(model, (8, 8)).macs == 8 * 8 * (3 * 3 + 2 * 3)
