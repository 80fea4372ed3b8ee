"""Grouped convolutions and LayerNormalization (ConvNeXt's building blocks) prune exactly where they can."""

import keras
import numpy as np

from segprune.graph import build_channel_graph, remove_channels
from tests.graph.harness import assert_prunes_exactly, randomize_weights, zeroed_copy


def _grouped_model(groups, filters):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", groups=groups, name="grouped")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))


def test_grouped_conv_prunes_the_same_positions_in_every_group():
    model = _grouped_model(groups=2, filters=12)
    graph = build_channel_graph(model)
    assert graph.group_of_layer("stem").size == 4  # input position i of each group is one channel
    assert graph.group_of_layer("grouped").size == 6  # and so is output position j
    for seed in range(3):
        pruned = assert_prunes_exactly(model, (16, 16, 3), seed=seed)
        layer = pruned.get_layer("grouped")
        assert layer.groups == 2 and layer.filters % 2 == 0 and layer.kernel.shape[-2] * 2 == pruned.get_layer("stem").filters


def test_depthwise_grouped_conv_removes_whole_groups():
    model = _grouped_model(groups=8, filters=16)  # one input per group, two outputs each
    graph = build_channel_graph(model)
    assert graph.group_of_layer("stem") is graph.group_of_layer("grouped")
    pruned = assert_prunes_exactly(model, (16, 16, 3), seed=1)
    layer = pruned.get_layer("grouped")
    assert layer.groups == pruned.get_layer("stem").filters < 8 and layer.filters == 2 * layer.groups


def _convnext_block():
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(16, 2, strides=2, name="stem")(inputs)
    stem = keras.layers.LayerNormalization(epsilon=1e-6, name="stem_norm")(stem)
    x = keras.layers.Conv2D(16, 3, padding="same", groups=16, name="depthwise")(stem)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    x = keras.layers.Dense(32, name="hidden")(x)
    x = keras.layers.Activation("gelu")(x)
    x = keras.layers.Dense(16, name="project")(x)
    x = keras.layers.Add()([stem, x])
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))


def test_mlp_hidden_units_after_layer_norm_prune_exactly():
    model = _convnext_block()
    randomize_weights(model)
    graph = build_channel_graph(model)
    hidden = graph.group_of_layer("hidden")
    assert graph.group_of_layer("stem") is graph.group_of_layer("project")  # the residual stream
    removed = hidden.classes[::3]
    pruned = remove_channels(graph, removed)
    sample = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    expected = zeroed_copy(graph, removed).predict(sample, verbose=0)
    np.testing.assert_allclose(pruned.predict(sample, verbose=0), expected, atol=1e-5, rtol=0)
    assert pruned.get_layer("hidden").units == 32 - len(removed)


def test_layer_norm_channels_are_normalised_over_the_kept_ones():
    model = _convnext_block()
    randomize_weights(model)
    graph = build_channel_graph(model)
    stream = graph.group_of_layer("stem")
    removed = stream.classes[1::4]
    pruned = remove_channels(graph, removed)
    kept = np.setdiff1d(np.arange(16), np.arange(16)[1::4])
    sample = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
    # reference: the original's stem output on the kept channels, normalised over those alone
    stem = keras.Model(model.inputs, model.get_layer("stem").output).predict(sample, verbose=0)[..., kept]
    mean, variance = stem.mean(axis=-1, keepdims=True), stem.var(axis=-1, keepdims=True)
    gamma, beta = (w[kept] for w in model.get_layer("stem_norm").get_weights())
    expected = (stem - mean) / np.sqrt(variance + 1e-6) * gamma + beta
    actual = keras.Model(pruned.inputs, pruned.get_layer("stem_norm").output).predict(sample, verbose=0)
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)
    assert pruned.predict(sample, verbose=0).shape == model.predict(sample, verbose=0).shape
    assert pruned.get_layer("depthwise").groups == len(kept)


def test_convnext_block_prunes_and_round_trips(tmp_path):
    model = _convnext_block()
    graph = build_channel_graph(model)
    pruned = remove_channels(graph, graph.group_of_layer("stem").classes[:4] + graph.group_of_layer("hidden").classes[:8])
    path = tmp_path / "block.keras"
    pruned.save(path)
    sample = np.random.default_rng(2).random((1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(sample, verbose=0), pruned.predict(sample, verbose=0), atol=1e-6)


def test_layer_norm_over_other_axes_is_pinned_and_the_rest_prunes_exactly():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.LayerNormalization(axis=[1, 2, 3], name="whole_map_norm")(x)
    x = keras.layers.Conv2D(6, 1, name="after")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(x))
    graph = build_channel_graph(model)
    [pin] = graph.pinned
    assert pin.name == "whole_map_norm" and "NormalizationHandler cannot express" in pin.reason and "normalises axis" in pin.reason
    assert graph.group_of_layer("conv").num_prunable == 0 and graph.group_of_layer("after").num_prunable == 6
    pruned = assert_prunes_exactly(model, (8, 8, 3))
    assert pruned.get_layer("whole_map_norm").get_config() == model.get_layer("whole_map_norm").get_config()
