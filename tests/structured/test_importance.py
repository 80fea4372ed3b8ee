"""Importance criteria: hand-checkable cases for the weight criteria, sanity for the data-driven ones."""

import keras
import numpy as np
import pytest

from segprune.data import synthetic_dataset
from segprune.graph import build_channel_graph
from segprune.structured.importance import CRITERIA, channel_importance


def _two_layer_model():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="producer")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Conv2D(1, 1, use_bias=False, activation="sigmoid", name="consumer")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("producer").set_weights([np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)])
    model.get_layer("consumer").set_weights([np.array([4.0, 3.0, 2.0, 1.0]).reshape(1, 1, 4, 1)])
    gamma, beta, mean, variance = model.get_layer("bn").get_weights()
    model.get_layer("bn").set_weights([np.array([0.1, 0.9, 0.5, 0.2]), beta, mean, variance])
    return model


def _group_scores(graph, scores):
    group = graph.group_of_layer("producer")
    return np.array([scores[c] for c in group.classes])


def test_l1_averages_normalised_producer_and_consumer_norms():
    graph = build_channel_graph(_two_layer_model())
    scores = _group_scores(graph, channel_importance(graph, "l1"))
    producer = np.array([1, 2, 3, 4]) / 2.5
    consumer = np.array([4, 3, 2, 1]) / 2.5
    np.testing.assert_allclose(scores, (producer + consumer) / 2)


def test_bn_scale_ranks_by_gamma():
    graph = build_channel_graph(_two_layer_model())
    scores = _group_scores(graph, channel_importance(graph, "bn-scale"))
    assert list(np.argsort(scores)) == [0, 3, 2, 1]


def test_random_is_seeded():
    graph = build_channel_graph(_two_layer_model())
    assert channel_importance(graph, "random", seed=3) == channel_importance(graph, "random", seed=3)
    assert channel_importance(graph, "random", seed=3) != channel_importance(graph, "random", seed=4)


@pytest.mark.parametrize("criterion", ["taylor", "activation", "mutual-info"])
def test_data_driven_criteria_score_every_prunable_channel(criterion):
    from segprune.models import unet

    data = synthetic_dataset(num_train=4, num_val=1, num_test=1, image_size=64, channels=1)
    graph = build_channel_graph(unet(num_classes=4, input_channels=1, base_filters=4, depth=2))
    scores = channel_importance(graph, criterion, data=data, num_batches=1)
    for group in graph.prunable_groups():
        values = np.array([scores[c] for c in group.classes])
        assert np.all(np.isfinite(values)) and np.all(values >= 0)


def test_data_driven_criteria_need_data():
    graph = build_channel_graph(_two_layer_model())
    with pytest.raises(ValueError, match="needs data"):
        channel_importance(graph, "taylor")


def test_unknown_criterion():
    graph = build_channel_graph(_two_layer_model())
    with pytest.raises(ValueError, match=str(list(CRITERIA))[1:20]):
        channel_importance(graph, "magnitude")
