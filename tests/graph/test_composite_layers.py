"""Composite layers (a layer made of standard sublayers, like keras-hub's SpatialPyramidPooling) are traced
into the graph, so the channels of their branches and projection prune like any others."""

import keras
import numpy as np
from keras import ops

from segprune.graph import build_channel_graph, remove_channels
from tests.graph.harness import assert_prunes_exactly


class PyramidPooling(keras.layers.Layer):
    """SpatialPyramidPooling in miniature: conv branches in Sequentials, a pooled branch resized back in
    `call` by a Resizing made there, ops.cast and ops.concatenate, a projection."""

    def __init__(self, filters=8, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape):
        def branch(kernel, dilation, name):
            layers = [
                keras.layers.Conv2D(self.filters, kernel, padding="same", dilation_rate=dilation, use_bias=False, name=f"{name}_conv"),
                keras.layers.BatchNormalization(name=f"{name}_bn"),
                keras.layers.Activation("relu"),
            ]
            return keras.Sequential(layers, name=name)

        self.branches = [branch(1, 1, "branch_1"), branch(3, 2, "branch_2")]
        self.pooled = keras.Sequential(
            [keras.layers.GlobalAveragePooling2D(), keras.layers.Reshape((1, 1, input_shape[-1])), keras.layers.Conv2D(self.filters, 1, name="pool_conv")],
            name="pooled",
        )
        self.projection = keras.Sequential([keras.layers.Conv2D(self.filters, 1, name="projection_conv"), keras.layers.ReLU()], name="projection")
        for sequential in [*self.branches, self.pooled]:
            sequential.build(input_shape)
        self.projection.build((*input_shape[:-1], 3 * self.filters))

    def call(self, inputs):
        results = [ops.cast(branch(inputs), inputs.dtype) for branch in self.branches]
        height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        results.append(keras.layers.Resizing(height, width, interpolation="bilinear", name="resizing")(self.pooled(inputs)))
        return self.projection(ops.concatenate(results, axis=-1))


def _model(input_shape=(16, 16, 3)):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(6, 3, padding="same", strides=2, name="encoder")(inputs)
    x = PyramidPooling(name="pyramid")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="logits")(x))


def test_composite_branches_and_projection_prune_exactly(tmp_path):
    model = _model()
    graph = build_channel_graph(model)
    for name in ("pyramid/branch_1/branch_1_conv", "pyramid/branch_2/branch_2_conv", "pyramid/pooled/pool_conv", "pyramid/projection/projection_conv"):
        assert graph.group_of_layer(name).num_prunable == 8
    assert "pyramid/pooled/pool_conv" in [c.qualified_name for c in graph.trace.calls]
    for seed in range(3):
        pruned = assert_prunes_exactly(model, (16, 16, 3), seed=seed)
    path = tmp_path / "pruned.keras"
    pruned.save(path)  # a plain model: PyramidPooling is gone
    assert not any(isinstance(layer, PyramidPooling) for layer in keras.saving.load_model(path).layers)


def test_pruning_one_branch_channel_and_the_encoder():
    model = _model()
    graph = build_channel_graph(model)
    removed = graph.group_of_layer("pyramid/branch_2/branch_2_conv").classes[:1] + graph.group_of_layer("encoder").classes[:2]
    pruned = remove_channels(graph, removed)
    pyramid = pruned.get_layer("pyramid")
    assert pyramid.get_layer("branch_2").get_layer("branch_2_conv").filters == 7
    assert pyramid.get_layer("pooled").get_layer("pool_conv").kernel.shape[-2] == 4  # the pooled branch reads 4 encoder channels


def test_composite_resizing_to_an_unknown_size_is_pinned_whole_with_the_reason():
    graph = build_channel_graph(_model((None, None, 3)))
    [pin] = graph.pinned
    assert pin.name == "pyramid" and "could not be traced" in pin.reason and "resizes to its input's size" in pin.reason
    assert graph.group_of_layer("encoder").num_prunable == 0  # read by the pinned layer
    assert "pyramid/pooled/pool_conv" not in [c.qualified_name for c in graph.trace.calls]


def test_a_custom_layer_with_weights_of_its_own_is_pinned_and_kept_as_it_is():
    class Scaled(keras.layers.Layer):
        def build(self, input_shape):
            self.conv = keras.layers.Conv2D(4, 1)
            self.conv.build(input_shape)
            self.scale = self.add_weight(shape=(4,), initializer="ones")

        def call(self, x):
            return self.conv(x) * self.scale

    inputs = keras.Input((8, 8, 3))
    x = Scaled(name="scaled")(keras.layers.Conv2D(4, 1, name="before")(keras.layers.Conv2D(6, 1, name="first")(inputs)))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(keras.layers.Conv2D(5, 1, name="after")(x)))
    graph = build_channel_graph(model)
    assert [(pin.name, pin.reason.split(".")[-1]) for pin in graph.pinned] == [("scaled", "Scaled")]
    assert [graph.group_of_layer(name).num_prunable for name in ("first", "before", "after")] == [6, 0, 5]
    pruned = assert_prunes_exactly(model, (8, 8, 3))
    for before, after in zip(model.get_layer("scaled").get_weights(), pruned.get_layer("scaled").get_weights()):
        np.testing.assert_array_equal(before, after)
