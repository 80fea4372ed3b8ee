"""Bias compensation: a removed, nearly constant channel's contribution lands in the consumer's bias."""

import keras
import numpy as np
import pytest

from segprune import prune_channels
from segprune.graph import build_channel_graph, remove_channels
from segprune.structured.compensation import compensate_removed_channels


def _model(consumer_bias: bool):
    inputs = keras.Input((None, None, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="producer")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(3, 3, padding="same", use_bias=consumer_bias, name="consumer")(x)
    if not consumer_bias:
        x = keras.layers.BatchNormalization(name="after")(x)
    model = keras.Model(inputs, x)
    # channel 0: tiny scale, large shift -> ReLU output is almost the constant 2
    model.get_layer("bn").set_weights([np.array([0.01, 1, 1, 1.0]), np.array([2.0, 0, 0, 0]), np.zeros(4), np.ones(4)])
    return model


@pytest.mark.parametrize("consumer_bias", [True, False])
@pytest.mark.parametrize("use_data", [True, False])
def test_removing_a_constant_channel_keeps_outputs(consumer_bias, use_data):
    model = _model(consumer_bias)
    graph = build_channel_graph(model)
    removed = {graph.group_of_layer("producer").classes[0]}
    images = np.random.default_rng(0).random((2, 16, 16, 2)).astype(np.float32)
    reference = model.predict(images, verbose=0)[:, 2:-2, 2:-2]  # borders see zero padding, not the mean
    plain = remove_channels(graph, removed)
    compensated = remove_channels(graph, removed)
    assert compensate_removed_channels(graph, compensated, removed, [(images, None)] if use_data else None) == 1
    plain_error = np.abs(plain.predict(images, verbose=0)[:, 2:-2, 2:-2] - reference).max()
    compensated_error = np.abs(compensated.predict(images, verbose=0)[:, 2:-2, 2:-2] - reference).max()
    assert compensated_error < 0.05 * plain_error


def test_prune_channels_option():
    model = _model(True)
    plain = prune_channels(model, ratio={"producer": 0.25}, importance="bn-scale", round_to=1)
    compensated = prune_channels(model, ratio={"producer": 0.25}, importance="bn-scale", round_to=1, compensate=True)
    assert not np.allclose(plain.get_layer("consumer").bias.numpy(), compensated.get_layer("consumer").bias.numpy())
