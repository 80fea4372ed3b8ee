"""The channel search space, budgets and the per-layer latency table."""

import pytest

from segprune.graph.groups import build_channel_graph
from segprune.models import mobilenet_unet, unet
from segprune.cost import parse_target
from segprune.runtime.latency import LatencyTable
from segprune.search.space import ChannelSpace, shrink
from segprune import flops


def test_widths_are_multiples_of_round_to_and_configurations_cost_what_the_built_model_costs():
    model = unet(num_classes=2, input_channels=1, base_filters=16, depth=2)
    space = ChannelSpace(build_channel_graph(model, input_shape=(64, 64)), round_to=8)
    assert space.widths("enc0a_conv") == [8, 16]
    assert space.widths("mid_a_conv") == list(range(8, 65, 8))
    config = {**space.dense(), "enc0a_conv": 8, "mid_a_conv": 24}
    built = shrink(model, space.dense(), config)
    assert space.resource(config, "flops") == flops(built, (64, 64)).macs
    assert space.resource(config, "params") == built.count_params()
    with pytest.raises(ValueError, match="not allowed"):
        space.removed({"enc0a_conv": 12})


def test_shrink_works_from_an_already_pruned_descendant():
    model = unet(num_classes=2, input_channels=1, base_filters=16, depth=2)
    space = ChannelSpace(build_channel_graph(model), round_to=8)
    first = {**space.dense(), "mid_a_conv": 32}
    second = {**first, "mid_a_conv": 16, "enc1a_conv": 16}
    child = shrink(model, space.dense(), first)
    grandchild = shrink(child, first, second)
    assert grandchild.get_layer("mid_a_conv").filters == 16 and grandchild.get_layer("enc1a_conv").filters == 16
    with pytest.raises(ValueError, match="configuration says"):
        shrink(child, space.dense(), second)


def test_latency_targets_parse():
    assert parse_target("latency=0.3") == ("latency", 0.3)


def test_latency_table_reproduces_the_dense_time_and_falls_with_width(tmp_path):
    model = unet(num_classes=2, input_channels=1, base_filters=16, depth=2)
    graph = build_channel_graph(model, input_shape=(64, 64))
    table = LatencyTable(threads=1, rounds=3, path=tmp_path / "table.json")
    table.calibrate(graph, dense_ms=50.0)  # far above the layers' sum: the remainder takes the difference
    assert table.cost(graph, []) == pytest.approx(50.0)
    space = ChannelSpace(graph, round_to=8)
    narrow = {key: widths[0] for key, widths in ((k, space.widths(k)) for k in space.groups)}
    assert table.cost(graph, space.removed(narrow)) < table.cost(graph, [])
    reloaded = LatencyTable(threads=1, path=tmp_path / "table.json")
    assert reloaded.entries == table.entries and reloaded.rest_ms == table.rest_ms


def test_latency_table_times_depthwise_and_nested_layers():
    graph = build_channel_graph(mobilenet_unet(alpha=0.35), input_shape=(64, 64))
    table = LatencyTable(threads=1, rounds=2)
    assert table.layers_ms(graph, []) > 0
    kinds = {key.split('"')[1] for key in table.entries}
    assert {"Conv2D", "DepthwiseConv2D", "Conv2DTranspose"} <= kinds or {"Conv2D", "DepthwiseConv2D"} <= kinds
