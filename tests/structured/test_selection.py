"""Selection strategies: rounding, never emptying a group, per-layer and global ranking."""

import pytest

from segprune.graph import build_channel_graph
from segprune.models import unet
from segprune.structured.importance import channel_importance
from segprune.structured.selection import GlobalRanking, LayerRatios, UniformRatio, as_strategy, kept_count


@pytest.mark.parametrize(
    "size,ratio,round_to,expected",
    [(64, 0.5, 8, 32), (64, 0.55, 8, 32), (64, 0.6, 8, 24), (12, 0.9, 8, 8), (6, 0.5, 8, 6), (64, 0.0, 8, 64), (64, 0.99, 8, 8), (10, 0.5, 1, 5)],
)
def test_kept_count(size, ratio, round_to, expected):
    assert kept_count(size, ratio, round_to) == expected


def test_kept_count_rejects_bad_input():
    with pytest.raises(ValueError, match="ratio"):
        kept_count(8, 1.0, 8)
    with pytest.raises(ValueError, match="round_to"):
        kept_count(8, 0.5, 0)


def _graph_and_scores():
    graph = build_channel_graph(unet(base_filters=16, depth=2))
    return graph, channel_importance(graph, "l1")


def _kept_per_group(graph, removed):
    removed = set(removed)
    return {group.index: sum(c not in removed for c in group.classes) for group in graph.groups}


def test_uniform_ratio_removes_the_lowest_scored_in_multiples():
    graph, scores = _graph_and_scores()
    removed = UniformRatio(0.5).select(graph, scores, round_to=8)
    kept = _kept_per_group(graph, removed)
    for group in graph.prunable_groups():
        assert kept[group.index] % 8 == 0 and kept[group.index] == group.size // 2
        dropped = [scores[c] for c in group.classes if c in removed]
        stayed = [scores[c] for c in group.classes if c not in removed]
        assert max(dropped) <= min(stayed)


def test_layer_ratios_touch_only_named_groups():
    graph, scores = _graph_and_scores()
    removed = LayerRatios({"enc1a_conv": 0.75}).select(graph, scores, round_to=8)
    group = graph.group_of_layer("enc1a_conv")
    assert set(removed) <= set(group.classes)
    assert _kept_per_group(graph, removed)[group.index] == 8
    with pytest.raises(ValueError, match="may not be pruned"):
        LayerRatios({"head_logits": 0.5}).select(graph, scores, round_to=8)
    with pytest.raises(KeyError, match="nope"):
        LayerRatios({"nope": 0.5}).select(graph, scores, round_to=8)


def test_global_ranking_spreads_unevenly_but_never_empties():
    graph, scores = _graph_and_scores()
    removed = GlobalRanking(0.5).select(graph, scores, round_to=8)
    kept = _kept_per_group(graph, removed)
    assert all(kept[g.index] >= 8 and kept[g.index] % 8 == 0 for g in graph.prunable_groups())
    total = sum(g.size for g in graph.prunable_groups())
    assert 0.3 * total < len(removed) < 0.7 * total


def test_as_strategy():
    assert as_strategy(0.3) == UniformRatio(0.3)
    assert as_strategy({"a": 0.5}) == LayerRatios({"a": 0.5})
    with pytest.raises(TypeError):
        as_strategy("half")
