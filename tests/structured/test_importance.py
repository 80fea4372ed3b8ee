"""Importance criteria, each against a small case whose answer is known by hand."""

import keras
import numpy as np
import pytest

from segprune.data import SegmentationDataset
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


def test_random_is_seeded():
    graph = build_channel_graph(_two_layer_model())
    assert channel_importance(graph, "random", seed=3) == channel_importance(graph, "random", seed=3)
    assert channel_importance(graph, "random", seed=3) != channel_importance(graph, "random", seed=4)


def _norm_model():
    """Two input channels, so that a filter's L1 and L2 norms differ: filters (3, 4), (1, 0) and (6, 8)."""
    inputs = keras.Input((None, None, 2))
    x = keras.layers.Conv2D(3, 1, use_bias=False, name="producer")(inputs)
    outputs = keras.layers.Conv2D(1, 1, use_bias=False, activation="sigmoid", name="consumer")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("producer").set_weights([np.array([[3.0, 1.0, 6.0], [4.0, 0.0, 8.0]]).reshape(1, 1, 2, 3)])
    model.get_layer("consumer").set_weights([np.array([1.0, -2.0, 2.0]).reshape(1, 1, 3, 1)])
    return model


@pytest.mark.parametrize("criterion,producer_norms", [("l1", [7.0, 1.0, 14.0]), ("l2", [5.0, 1.0, 10.0])])
def test_l1_and_l2_use_their_own_norm_of_each_filter(criterion, producer_norms):
    graph = build_channel_graph(_norm_model())
    scores = _group_scores(graph, channel_importance(graph, criterion))
    producer = np.array(producer_norms) / np.mean(producer_norms)
    consumer = np.array([1.0, 2.0, 2.0]) / (5.0 / 3.0)  # one weight per channel: both norms are |v|
    np.testing.assert_allclose(scores, (producer + consumer) / 2)


def test_bn_scale_is_gamma_over_its_mean():
    graph = build_channel_graph(_two_layer_model())
    scores = _group_scores(graph, channel_importance(graph, "bn-scale"))
    gamma = np.array([0.1, 0.9, 0.5, 0.2])
    np.testing.assert_allclose(scores, gamma / gamma.mean())


def _binary_dataset(images: np.ndarray, masks: np.ndarray) -> SegmentationDataset:
    ids = [f"s{index}" for index in range(len(images))]
    pairs = dict(zip(ids, zip(images, masks)))
    return SegmentationDataset("hand-made", 2, images.shape[-1], {"train": ids}, lambda key: pairs[key])


def _random_binary_data(channels: int = 1, count: int = 4) -> SegmentationDataset:
    rng = np.random.default_rng(0)
    images = rng.uniform(0.1, 1.0, size=(count, 128, 128, channels)).astype(np.float32)
    masks = (rng.random((count, 128, 128)) > 0.6).astype(np.int32)
    return _binary_dataset(images, masks)


def test_taylor_is_the_product_of_the_channel_path_weights():
    """1x1 convolutions around a BatchNorm at its initial statistics: the logit is sum_k v_k g_k w_k x, so
    |w_k dL/dw_k| = |v_k dL/dv_k| = c |v_k g_k w_k| with the same c for every channel."""
    graph = build_channel_graph(_two_layer_model())
    scores = _group_scores(graph, channel_importance(graph, "taylor", data=_random_binary_data(), num_batches=1))
    path = np.array([1.0, 2.0, 3.0, 4.0]) * np.array([0.1, 0.9, 0.5, 0.2]) * np.array([4.0, 3.0, 2.0, 1.0])
    np.testing.assert_allclose(scores, path / path.mean(), rtol=1e-4)


def test_activation_is_the_mean_absolute_output_the_consumer_reads():
    """The consumer reads the BatchNorm's output g_k w_k x (x > 0): its mean |.| is proportional to g_k w_k."""
    graph = build_channel_graph(_two_layer_model())
    scores = _group_scores(graph, channel_importance(graph, "activation", data=_random_binary_data(), num_batches=1))
    scale = np.array([1.0, 2.0, 3.0, 4.0]) * np.array([0.1, 0.9, 0.5, 0.2])
    np.testing.assert_allclose(scores, scale / scale.mean(), rtol=1e-4)


def test_mutual_information_finds_the_channels_that_see_the_mask():
    """Channels 0 and 1 read an input channel that shows the mask, channels 2 and 3 pure noise: the first pair
    carries about all the information (the mask's entropy), the second about none."""
    rng = np.random.default_rng(0)
    masks = (rng.random((4, 128, 128)) > 0.6).astype(np.int32)
    images = rng.uniform(0.0, 1.0, size=(4, 128, 128, 3)).astype(np.float32)
    images[..., 0] = 0.2 + 0.6 * masks + rng.normal(0.0, 0.02, masks.shape)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="producer")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid", name="consumer")(x))
    reads = np.zeros((1, 1, 3, 4))
    reads[0, 0, 0, 0], reads[0, 0, 0, 1], reads[0, 0, 1, 2], reads[0, 0, 2, 3] = 1.0, -2.0, 1.0, 1.0
    model.get_layer("producer").set_weights([reads])
    graph = build_channel_graph(model)
    scores = _group_scores(graph, channel_importance(graph, "mutual-info", data=_binary_dataset(images, masks), num_batches=1))
    np.testing.assert_allclose(scores[:2], 2.0, atol=0.15)  # normalised by the mean: (H + H + ~0 + ~0) / 4 = H / 2
    assert np.all(scores[2:] < 0.15), scores


def test_data_driven_criteria_need_data():
    graph = build_channel_graph(_two_layer_model())
    with pytest.raises(ValueError, match="needs data"):
        channel_importance(graph, "taylor")


def test_unknown_criterion():
    graph = build_channel_graph(_two_layer_model())
    with pytest.raises(ValueError, match=str(list(CRITERIA))[1:20]):
        channel_importance(graph, "magnitude")
