"""One-shot channel pruning: score channels once, select, rebuild a smaller model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import keras

from segprune.cost.resources import BudgetUnreachable, parse_target, resource_after
from segprune.data.dataset import SegmentationDataset
from segprune.graph.groups import ChannelGraph, build_channel_graph
from segprune.graph.surgery import remove_channels
from segprune.structured.compensation import compensate_removed_channels
from segprune.structured.importance import channel_importance, sample_batches
from segprune.structured.selection import Strategy, UniformRatio, as_strategy

COST_INPUT_SIZE = (256, 256)  # the (height, width) at which MACs budgets are measured unless one is given


def prune_channels(
    model: keras.Model,
    ratio: float | Mapping[str, float] | Strategy = 0.5,
    importance: str = "l1",
    round_to: int = 8,
    ignore: Iterable[str] | None = None,
    data: SegmentationDataset | None = None,
    target: str | None = None,
    compensate: bool = False,
    image_size: tuple[int, int] = COST_INPUT_SIZE,
    graph: ChannelGraph | None = None,
) -> keras.Model:
    """Returns a smaller copy of `model` with the least important channels removed; `model` is untouched.

    Args:
        model: A functional or Sequential model (nested models are pruned too).
        ratio: Share of channels to remove from every prunable group; a dict of layer name to ratio; or a
            selection strategy (`UniformRatio`, `LayerRatios`, `GlobalRanking`).
        importance: `"l1"`, `"l2"`, `"bn-scale"`, `"taylor"`, `"activation"`, `"random"` or `"mutual-info"`.
        round_to: Every pruned group keeps a multiple of this many channels.
        ignore: Names of layers whose channels must stay.
        data: Training data for the data-driven criteria.
        target: Instead of `ratio`, a budget such as `"flops=0.25"` (a quarter of the dense MACs at
            `image_size`) or `"params=0.5"`; the uniform ratio that meets it is searched for.
        compensate: Move each removed channel's mean contribution into its consumers' biases (measured on
            `data` when given, else estimated from BatchNorm statistics); see `compensation.py`.
        image_size: (height, width) at which a `target`'s MACs are counted (a model built for one size keeps it).
        graph: `model`'s channel graph with `ignore` applied, traced at `image_size`, when the caller has built
            it already (`segprune.prune` builds one per call); built here otherwise.

    Example:
        >>> smaller = segprune.prune_channels(model, ratio=0.5, importance="l1")
        >>> smaller.count_params() < model.count_params()
        True
    """
    if graph is None:
        graph = build_channel_graph(model, ignore or (), input_shape=image_size if target else None)
    return prune_graph(graph, ratio, importance, round_to, data, target, compensate)


def prune_graph(
    graph: ChannelGraph,
    ratio: float | Mapping[str, float] | Strategy = 0.5,
    importance: str = "l1",
    round_to: int = 8,
    data: SegmentationDataset | None = None,
    target: str | None = None,
    compensate: bool = False,
) -> keras.Model:
    """`prune_channels` on a channel graph built already (`ignore` applied, traced at the size a `target` is
    measured at): a smaller copy of `graph.model`, which is untouched. `segprune.prune` builds one graph per call.

    Example:
        >>> smaller = prune_graph(build_channel_graph(model, input_shape=(256, 256)), target="flops=0.5")
    """
    scores = channel_importance(graph, importance, data)
    strategy = ratio_for_target(graph, scores, target, round_to) if target else as_strategy(ratio)
    removed = strategy.select(graph, scores, round_to)
    pruned = remove_channels(graph, removed)
    if compensate:
        batches = list(sample_batches(graph.model, data, num_batches=4, seed=0)) if data is not None else None
        compensate_removed_channels(graph, pruned, set(removed), batches)
    return pruned


def ratio_for_target(
    graph: ChannelGraph,
    scores: Mapping[int, float],
    target: str,
    round_to: int,
    strategy: Callable[[float], Strategy] = UniformRatio,
) -> Strategy:
    """The smallest ratio whose pruned model meets `target` (bisection on the graph's cost model).

    `strategy` turns a ratio into a selection strategy: `UniformRatio` by default, or e.g.
    `lambda r: GlobalRanking(r, normalize=False)`.
    """
    resource, fraction = parse_target(target)
    budget = fraction * resource_after(graph, [], resource)

    def cost(ratio: float) -> int:
        return resource_after(graph, strategy(ratio).select(graph, scores, round_to), resource)

    if cost(0.0) <= budget:
        return strategy(0.0)
    low, high = 0.0, 0.99
    if cost(high) > budget:
        reachable = cost(high) / resource_after(graph, [], resource)
        raise BudgetUnreachable(
            f"Target {target} cannot be met: with round_to={round_to}, pruning every group as far as allowed "
            f"keeps {reachable:.3f} of the {resource}. Lower round_to or raise the target.",
            reachable,
        )
    for _ in range(20):
        middle = (low + high) / 2
        if cost(middle) <= budget:
            high = middle
        else:
            low = middle
    return strategy(high)
