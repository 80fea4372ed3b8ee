"""Layers segprune cannot see through are pinned, not refused: their channels in and out stay whole, everything
else prunes exactly, the surgery leaves them as they are, and the summary and the CLI name them with the fix.
Where keeping channels whole cannot be exact, the refusal is one line naming the layer."""

import re

import keras
import numpy as np
import pytest
from keras import layers, ops

from segprune.cli import main
from segprune.graph import UnsupportedLayerError, build_channel_graph
from segprune.structured.summary import pruning_summary
from tests.graph.harness import assert_prunes_exactly, infer


class Gate(keras.layers.Layer):
    """A custom layer with a weight of its own and no handler: a learnt scalar gate on a feature map."""

    def build(self, input_shape):
        self.gate = self.add_weight(shape=(), initializer="ones", name="gate")

    def call(self, x):
        return x * ops.sigmoid(self.gate)


def _conv_block(x, filters, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return layers.ReLU(name=f"{name}_relu")(layers.BatchNormalization(name=f"{name}_bn")(x))


def _unet_with_gate(size=32):
    inputs = keras.Input((size, size, 3))
    skip = _conv_block(inputs, 8, "enc0")
    x = _conv_block(layers.MaxPooling2D()(skip), 16, "enc1")
    x = Gate(name="gate")(x)
    x = _conv_block(x, 16, "mid")
    x = layers.Concatenate()([layers.UpSampling2D()(x), skip])
    x = _conv_block(x, 8, "dec0")
    return keras.Model(inputs, layers.Conv2D(2, 1, name="logits")(x))


def test_a_custom_layer_in_a_unet_is_pinned_and_everything_else_prunes_exactly(tmp_path):
    model = _unet_with_gate()
    graph = build_channel_graph(model)
    assert graph.pinned == [("gate", f"no channel handler for class {__name__}.Gate")]
    assert graph.group_of_layer("enc1_conv").num_prunable == 0 and graph.group_of_layer("gate").num_prunable == 0
    assert [graph.group_of_layer(name).num_prunable for name in ("enc0_conv", "mid_conv", "dec0_conv")] == [8, 16, 8]
    pruned = assert_prunes_exactly(model, (32, 32, 3))
    assert pruned.get_layer("enc1_conv").filters == 16 and pruned.get_layer("gate").get_config() == model.get_layer("gate").get_config()
    np.testing.assert_array_equal(pruned.get_layer("gate").get_weights()[0], model.get_layer("gate").get_weights()[0])
    summary = pruning_summary(model, pruned, (32, 32))
    assert summary.pinned == tuple(graph.pinned) and summary.macs_after < summary.macs_before
    assert [layer.params_after for layer in summary.layers if layer.name == "gate"] == [1]  # still priced
    assert summary.params_after == pruned.count_params()
    assert summary.pinned_lines()[1] == f"  gate: no channel handler for class {__name__}.Gate"
    assert "segprune.graph.register_handler(TheLayer, ChannelwiseHandler())" in summary.pinned_lines()[-1]


def _block(x, filters, kernel_size=3, dilation_rate=1, strides=1, use_bias=False):
    """keras.io DeepLabV3+'s convolution_block: conv, BatchNorm, `ops.nn.relu` on the symbolic tensor."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, dilation_rate=dilation_rate, padding="same", use_bias=use_bias)(x)
    return ops.nn.relu(layers.BatchNormalization()(x))


def _aspp(x, filters):
    height, width = x.shape[1], x.shape[2]
    pooled = _block(layers.AveragePooling2D(pool_size=(height, width))(x), filters, 1, use_bias=True)
    pooled = layers.UpSampling2D(size=(height, width), interpolation="bilinear")(pooled)
    branches = [pooled, _block(x, filters, 1), _block(x, filters, 3, 2), _block(x, filters, 3, 3)]
    return _block(layers.Concatenate(axis=-1)(branches), filters, 1)


def deeplab_v3_plus(size=64, num_classes=3):
    """keras.io's DeepLabV3+ recipe with a small trunk: `resnet50.preprocess_input` (the BGR flip slices the
    input's channels) on the input, ASPP with image pooling, low-level features joined at 1/4."""
    inputs = keras.Input((size, size, 3))
    x = keras.applications.resnet50.preprocess_input(inputs)
    low = _block(_block(x, 8, strides=2), 8, strides=2)
    x = _aspp(_block(_block(low, 16, strides=2), 16, strides=2), 16)
    x = layers.UpSampling2D(size=(size // 4 // x.shape[1], size // 4 // x.shape[2]), interpolation="bilinear")(x)
    x = _block(_block(layers.Concatenate(axis=-1)([x, _block(low, 6, 1)]), 16), 16)
    x = layers.UpSampling2D(size=(size // x.shape[1], size // x.shape[2]), interpolation="bilinear")(x)
    return keras.Model(inputs, layers.Conv2D(num_classes, 1, padding="same")(x))


def test_keras_io_deeplab_v3_plus_prunes_exactly_around_its_input_slicing(tmp_path):
    model = deeplab_v3_plus()
    graph = build_channel_graph(model)
    assert [pin.name.rstrip("_0123456789") for pin in graph.pinned] == ["get_item"] * 3 + ["stack"]  # the flip: x[..., i] stacked
    assert sum(group.num_prunable for group in graph.groups) > 100
    pruned = assert_prunes_exactly(model, (64, 64, 3))
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    sample = np.random.default_rng(1).random((1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(infer(keras.saving.load_model(path), sample), infer(pruned, sample), atol=1e-5)


def test_layers_reading_a_pinned_output_of_unknown_width_are_pinned_too():
    class Unsized(keras.layers.Layer):
        def call(self, x):
            return x

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], None)

    inputs = keras.Input((8, 8, 3))
    x = Unsized(name="unsized")(layers.Conv2D(4, 1, name="before")(layers.Conv2D(6, 1, name="first")(inputs)))
    x = layers.Activation("relu", name="reads_unsized")(x)
    model = keras.Model(inputs, layers.Conv2D(2, 1)(layers.Conv2D(5, 1, name="after")(layers.Reshape((8, 8, 4), name="sized_again")(x))))
    graph = build_channel_graph(model)
    assert [pin.name for pin in graph.pinned] == ["unsized", "reads_unsized", "sized_again"]
    assert graph.pinned[1].reason == "it reads a tensor of unknown channel count from pinned 'unsized'"
    assert [graph.group_of_layer(name).num_prunable for name in ("first", "before", "after")] == [6, 0, 5]
    assert_prunes_exactly(model, (8, 8, 3))


def test_channels_first_is_still_refused_in_one_line():
    inputs = keras.Input((3, 8, 8))
    x = layers.Conv2D(4, 3, data_format="channels_first", name="first_conv")(inputs)
    with pytest.raises(UnsupportedLayerError, match=r"'first_conv' \(Conv2D\) uses data_format='channels_first'") as error:
        build_channel_graph(keras.Model(inputs, x))
    assert "\n" not in str(error.value)


def test_cli_prune_lists_the_pinned_layers(tmp_path, capsys):
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs[..., :2])  # a GetItem op taking two channels: pinned
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="body")(x)
    source, out = tmp_path / "model.keras", tmp_path / "pruned.keras"
    keras.Model(inputs, layers.Conv2D(2, 1, name="logits")(x)).save(source)
    assert main(["prune", str(source), "--ratio", "0.5", "--round-to", "1", "--image-size", "16", "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "pinned (channels in and out kept whole): 1 layer" in printed
    assert re.search(r"get_item(_\d+)?: its GetItemHandler cannot express this call's coupling", printed) and "register_handler" in printed
    assert keras.saving.load_model(out).get_layer("stem").filters == 4
