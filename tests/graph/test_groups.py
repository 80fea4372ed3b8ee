"""The channel graph: which channels are coupled, which are fixed, and clear errors for what it cannot do."""

import keras
import numpy as np
import pytest
from keras import ops

from segprune.graph import ChannelwiseHandler, UnsupportedLayerError, build_channel_graph, register_handler
from segprune.models import unet
from tests.graph.harness import assert_prunes_exactly


def _conv(filters, name):
    return keras.layers.Conv2D(filters, 3, padding="same", name=name)


def test_unet_groups_follow_the_architecture():
    graph = build_channel_graph(unet(base_filters=8, depth=2))
    assert graph.group_of_layer("enc0a_conv").size == 8
    assert graph.group_of_layer("enc0a_conv") is graph.group_of_layer("enc0a_bn")
    assert graph.group_of_layer("mid_b_conv").size == 32
    # the head's output is the model output: never prunable; the input channel neither
    assert graph.group_of_layer("head_logits").num_prunable == 0
    assert all(group.num_prunable == group.size for group in graph.prunable_groups())


def test_add_couples_its_inputs():
    inputs = keras.Input((None, None, 3))
    a = _conv(8, "a")(inputs)
    b = _conv(8, "b")(inputs)
    merged = keras.layers.Add()([a, b])
    model = keras.Model(inputs, _conv(2, "out")(merged))
    graph = build_channel_graph(model)
    assert graph.group_of_layer("a") is graph.group_of_layer("b")
    assert sorted(graph.group_of_layer("a").producers) == ["a", "b"]
    assert_prunes_exactly(model, (16, 16, 3))


def test_concatenate_keeps_inputs_independent_and_slices_the_consumer():
    inputs = keras.Input((None, None, 3))
    a = _conv(8, "a")(inputs)
    b = _conv(16, "b")(inputs)
    joined = keras.layers.Concatenate()([a, b])
    model = keras.Model(inputs, _conv(2, "out")(joined))
    graph = build_channel_graph(model)
    assert graph.group_of_layer("a") is not graph.group_of_layer("b")
    consumer = [i for i, call in enumerate(graph.trace.calls) if call.layer.name == "out"][0]
    assert len(graph.call_inputs[consumer][0]) == 24
    assert_prunes_exactly(model, (16, 16, 3))


def test_add_of_a_concatenation_couples_across_the_slices():
    inputs = keras.Input((None, None, 3))
    a, b, c = _conv(8, "a")(inputs), _conv(8, "b")(inputs), _conv(16, "c")(inputs)
    summed = keras.layers.Add()([keras.layers.Concatenate()([a, b]), c])
    model = keras.Model(inputs, _conv(2, "out")(summed))
    graph = build_channel_graph(model)
    assert graph.group_of_layer("a") is not graph.group_of_layer("b")
    assert "c" in graph.group_of_layer("a").producers and "c" in graph.group_of_layer("b").producers
    assert_prunes_exactly(model, (16, 16, 3))


def test_squeeze_excitation_multiply_with_broadcast():
    inputs = keras.Input((None, None, 3))
    features = _conv(16, "features")(inputs)
    gate = keras.layers.GlobalAveragePooling2D()(features)
    gate = keras.layers.Reshape((1, 1, 16))(gate)
    gate = keras.layers.Conv2D(4, 1, activation="relu", name="squeeze")(gate)
    gate = keras.layers.Conv2D(16, 1, activation="sigmoid", name="excite")(gate)
    scaled = keras.layers.Multiply()([features, gate])
    spatial = keras.layers.Conv2D(1, 1, activation="sigmoid", name="spatial")(scaled)
    attended = keras.layers.Multiply()([scaled, spatial])  # a one-channel map broadcasts: not coupled
    model = keras.Model(inputs, _conv(2, "out")(attended))
    graph = build_channel_graph(model)
    assert graph.group_of_layer("features") is graph.group_of_layer("excite")
    assert_prunes_exactly(model, (16, 16, 3))


def test_shared_layer_prunes_the_same_channels_on_every_call():
    inputs = keras.Input((None, None, 3))
    shared = _conv(8, "shared")
    x = shared(_conv(8, "first")(inputs))
    x = shared(x)
    model = keras.Model(inputs, _conv(2, "out")(x))
    graph = build_channel_graph(model)
    assert graph.group_of_layer("first") is graph.group_of_layer("shared")
    assert_prunes_exactly(model, (16, 16, 3))


def test_sequential_models_and_depthwise_multiplier():
    model = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            _conv(8, "stem"),
            keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="depthwise"),
            keras.layers.BatchNormalization(),
            keras.layers.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, name="separable"),
            keras.layers.Conv2D(2, 1),
        ]
    )
    graph = build_channel_graph(model)
    assert graph.group_of_layer("stem") is graph.group_of_layer("depthwise")
    assert_prunes_exactly(model, (16, 16, 3))


def test_softmax_over_channels_blocks_pruning():
    inputs = keras.Input((None, None, 3))
    x = _conv(8, "a")(inputs)
    x = keras.layers.Softmax()(x)
    model = keras.Model(inputs, _conv(2, "out")(x))
    assert build_channel_graph(model).group_of_layer("a").num_prunable == 0


def test_ignored_layers_keep_their_channels():
    model = unet(base_filters=8, depth=2)
    graph = build_channel_graph(model, ignore=["enc0b_conv"])
    assert graph.group_of_layer("enc0b_conv").num_prunable == 0
    assert graph.group_of_layer("enc0a_conv").num_prunable == 0  # enc0b_conv's inputs stay too
    with pytest.raises(ValueError, match="does not have"):
        build_channel_graph(model, ignore=["no_such_layer"])


class _Doubler(keras.layers.Layer):
    def call(self, inputs):
        return inputs * 2.0


def test_unknown_layer_is_pinned_with_its_class_and_can_be_registered(monkeypatch):
    from segprune.graph import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # this test's registration stays its own
    inputs = keras.Input((None, None, 3))
    x = _Doubler(name="doubler")(_conv(8, "a")(inputs))
    model = keras.Model(inputs, _conv(2, "out")(x))
    assert build_channel_graph(model).pinned == [("doubler", f"no channel handler for class {__name__}._Doubler")]
    assert build_channel_graph(model).group_of_layer("a").num_prunable == 0
    register_handler(_Doubler, ChannelwiseHandler())
    assert build_channel_graph(model).pinned == [] and build_channel_graph(model).group_of_layer("a").num_prunable == 8
    monkeypatch.undo()
    assert build_channel_graph(model).pinned  # no other test sees the handler


def test_reshape_that_moves_channels_is_pinned_and_the_rest_prunes_exactly():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Reshape((8, 4, 4), name="moves")(_conv(8, "a")(_conv(6, "first")(inputs)))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(_conv(5, "b")(x)))
    graph = build_channel_graph(model)
    assert [pin.name for pin in graph.pinned] == ["moves"] and "ReshapeHandler cannot express" in graph.pinned[0].reason
    assert [graph.group_of_layer(name).num_prunable for name in ("first", "a", "b")] == [6, 0, 5]
    pruned = assert_prunes_exactly(model, (4, 4, 3))
    assert pruned.get_layer("moves").target_shape == (8, 4, 4)


def test_a_pinned_layer_sharing_weights_with_a_pruned_one_is_refused():
    class TiedProjection(keras.layers.Layer):
        """Reads through the transposed kernel of a Dense layer it holds (tied weights)."""

        def __init__(self, dense, **kwargs):
            super().__init__(**kwargs)
            self.dense = dense
            self.scale = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return ops.matmul(x, ops.transpose(self.dense.kernel)) * self.scale

    inputs = keras.Input((4, 4, 3))
    dense = keras.layers.Dense(8, name="embed")
    x = dense(_conv(3, "a")(inputs))
    x = keras.layers.Dense(8, name="inner")(x)
    model = keras.Model(inputs, TiedProjection(dense, name="tied")(x))
    with pytest.raises(UnsupportedLayerError, match=r"'tied' is pinned .*shares its variables with 'embed'.*ignore=\['embed'\]"):
        build_channel_graph(model)


def test_flatten_into_dense_at_a_fixed_size():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Flatten()(_conv(8, "a")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    assert_prunes_exactly(model, (4, 4, 3))


def test_subclassed_model_is_refused():
    class Tiny(keras.Model):
        def call(self, inputs):
            return inputs

    with pytest.raises(ValueError, match="subclassed"):
        build_channel_graph(Tiny())


def test_group_normalization_keeps_counts_divisible_by_its_groups(tmp_path):
    from segprune import prune_channels
    from segprune.graph import remove_channels

    inputs = keras.Input((None, None, 3))
    x = _conv(16, "a")(inputs)
    x = keras.layers.GroupNormalization(groups=4, name="norm")(x)
    model = keras.Model(inputs, _conv(2, "out")(x))
    graph = build_channel_graph(model)
    assert graph.group_of_layer("a").multiple_of == 4
    pruned = prune_channels(model, ratio=0.3, round_to=1)  # 11.2 kept channels become 12
    assert pruned.get_layer("a").filters == 12
    assert pruned.predict(np.zeros((1, 8, 8, 3)), verbose=0).shape == (1, 8, 8, 2)
    with pytest.raises(ValueError, match="multiple of 4"):
        remove_channels(graph, graph.group_of_layer("a").classes[:3])
    pruned.save(tmp_path / "pruned.keras")
    reloaded = keras.saving.load_model(tmp_path / "pruned.keras")
    sample = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype("float32")
    assert reloaded.get_layer("norm").groups == 4 and reloaded.get_layer("a").filters == 12
    np.testing.assert_allclose(reloaded.predict(sample, verbose=0), pruned.predict(sample, verbose=0), atol=1e-6)


def test_channels_first_layers_are_refused_with_the_fix():
    inputs = keras.Input((3, 16, 16))
    x = keras.layers.Conv2D(8, 3, padding="same", data_format="channels_first", name="first_conv")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, data_format="channels_first")(x))
    with pytest.raises(UnsupportedLayerError, match=r"'first_conv' \(Conv2D\) uses data_format='channels_first'.*channels_last"):
        build_channel_graph(model)


def test_unknown_channel_class_is_a_clear_error():
    graph = build_channel_graph(unet(base_filters=8, depth=2))
    known = graph.prunable_groups()[0].classes[0]
    assert graph.has_class(known) and not graph.has_class(10**9)
    with pytest.raises(ValueError, match="does not exist"):
        graph.group_of_class(10**9)


def test_indexing_that_keeps_the_channel_axis_whole_prunes_through_exactly():
    inputs = keras.Input((4, 4, 3))
    x = _conv(8, "a")(inputs)[..., ::-1]  # reversed channels: the pruned tensor reversed is the same channels
    x = _conv(6, "b")(x)[:, :, :2, :]  # a range of columns, every channel
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(x))
    graph = build_channel_graph(model)
    assert graph.pinned == [] and [graph.group_of_layer(name).num_prunable for name in ("a", "b")] == [8, 6]
    assert_prunes_exactly(model, (4, 4, 3))
