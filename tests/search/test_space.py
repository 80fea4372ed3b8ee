"""The channel search space, budgets and the per-layer latency table."""

import json
import math

import pytest

from segprune import flops
from segprune.cost import parse_target
from segprune.graph.groups import build_channel_graph
from segprune.models import mobilenet_unet, unet
from segprune.runtime.latency import LatencyTable, latency_kind
from segprune.search.space import ChannelSpace, shrink


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


def _fake_layer_time(calls):
    """A stand-in for timing one layer on ONNX Runtime: its input plus output size, in nanoseconds."""

    def time_layer(layer, input_shape, output_shape, threads, rounds, **settings):
        calls.append((type(layer).__name__, input_shape, output_shape))
        return (math.prod(input_shape[1:]) + math.prod(output_shape[1:])) * 1e-6, "fp32"  # (ms, precision that ran)

    return time_layer


def test_latency_table_prices_a_configuration_as_the_built_narrow_model_and_memoises(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("segprune.runtime.latency._time_layer", _fake_layer_time(calls))
    model = unet(num_classes=2, input_channels=1, base_filters=16, depth=2)
    graph = build_channel_graph(model, input_shape=(64, 64))
    table = LatencyTable(threads=1, rounds=3, path=tmp_path / "table.json")
    table.calibrate(graph, dense_ms=50.0)  # far above the layers' sum: the remainder takes the difference
    dense_layers = table.layers_ms(graph, [])
    assert table.rest_ms == pytest.approx(50.0 - dense_layers) and table.cost(graph, []) == pytest.approx(50.0)
    assert len(calls) == len(table.entries), "each distinct layer shape is timed once"

    space = ChannelSpace(graph, round_to=8)
    narrow = {key: space.widths(key)[0] for key in space.groups}
    built = shrink(model, space.dense(), narrow)
    built_graph = build_channel_graph(built, input_shape=(64, 64))
    estimate = table.layers_ms(graph, space.removed(narrow))
    assert estimate == pytest.approx(LatencyTable(threads=1).layers_ms(built_graph, []))
    assert table.cost(graph, space.removed(narrow)) == pytest.approx(table.rest_ms + estimate)
    assert estimate < dense_layers

    timed = len(calls)
    reloaded = LatencyTable(threads=1, path=tmp_path / "table.json")
    assert reloaded.entries == table.entries and reloaded.rest_ms == table.rest_ms
    assert reloaded.cost(graph, space.removed(narrow)) == pytest.approx(table.cost(graph, space.removed(narrow)))
    assert len(calls) == timed, "a reloaded table times nothing again"


def test_latency_table_times_every_layer_kind_on_onnx_runtime_including_nested_ones():
    graph = build_channel_graph(mobilenet_unet(alpha=0.35), input_shape=(64, 64))
    table = LatencyTable(threads=1, rounds=1)
    table.layers_ms(graph, [])  # builds and runs a one-node ONNX graph per distinct layer; a broken one raises
    kinds = {json.loads(key)[0] for key in table.entries}
    assert kinds == {"Conv2D", "DepthwiseConv2D", "Conv2DTranspose"}
    nested = [call for call in graph.trace.calls if call.path == ("encoder",) and latency_kind(call.layer) is not None]
    assert any(json.loads(key)[0] == "DepthwiseConv2D" for key in table.entries) and nested, "the encoder's layers are timed"
    assert all(math.isfinite(value) and value > 0 for value in table.entries.values())
