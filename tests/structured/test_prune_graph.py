"""prune_graph: one-shot pruning of a channel graph built once (what segprune.prune does) equals prune_channels."""

import numpy as np
import pytest

from segprune import prune_channels
from segprune.graph.groups import build_channel_graph
from segprune.models import unet
from segprune.structured.oneshot import prune_graph


@pytest.mark.parametrize(
    "importance,compensate,uses_data", [("l1", True, False), ("activation", True, True), ("taylor", False, True)]
)
def test_pruning_a_built_graph_gives_the_model_prune_channels_builds(data4, importance, compensate, uses_data):
    """The same architecture and weights as the public route (which builds the graph from `ignore` and `image_size`);
    the ignored layer keeps its filters, and compensation (its batches read through the graph's model) moves biases."""
    model = unet(num_classes=data4.num_classes, input_channels=1, base_filters=8, depth=1)
    data = data4 if uses_data else None
    options = dict(importance=importance, round_to=4, data=data, target="flops=0.5", compensate=compensate)
    expected = prune_channels(model, ignore=["enc0a_conv"], image_size=(32, 32), **options)
    graph = build_channel_graph(model, ["enc0a_conv"], input_shape=(32, 32))
    pruned = prune_graph(graph, **options)
    assert [w.shape for w in pruned.get_weights()] == [w.shape for w in expected.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(pruned.get_weights(), expected.get_weights()))
    assert pruned.count_params() < model.count_params()
    assert pruned.get_layer("enc0a_conv").kernel.shape == model.get_layer("enc0a_conv").kernel.shape
    if compensate:
        plain = prune_graph(graph, **{**options, "compensate": False})
        assert not all(np.array_equal(a, b) for a, b in zip(pruned.get_weights(), plain.get_weights()))
