"""Selection strategies: which channel classes to remove, given importance scores.

Every strategy keeps, in each group it touches, a multiple of `round_to` channels (CPU kernels run fastest
on multiples of 8 or 16; an odd count can make a pruned model slower than the dense one), never fewer than
`round_to` and never zero, and never removes a channel the graph marks as fixed. Channels are tensor channels:
a class that stands for several (an attention head, `Group.width` wide) counts as that many, so a head of 8 is a
multiple of round_to 8 on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from segprune.graph.groups import ChannelGraph, Group


def kept_count(size: int, ratio: float, round_to: int, minimum: int = 0) -> int:
    """Channels to keep in a group of `size` when removing `ratio` of them, rounded to a multiple of `round_to`.

    Example:
        >>> kept_count(64, 0.5, 8), kept_count(64, 0.55, 8), kept_count(12, 0.9, 8)
        (32, 32, 8)
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"A pruning ratio must be in [0, 1), got {ratio}.")
    if round_to < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to}.")
    wanted = size * (1.0 - ratio)
    if size <= round_to:
        return size
    rounded = int(np.floor(wanted / round_to + 0.5)) * round_to
    return int(min(size, max(round_to, rounded, minimum)))


def _kept_in_group(group: Group, ratio: float, round_to: int) -> int:
    """`kept_count` with the group's own divisibility constraint folded into the rounding step."""
    return kept_count(group.size, ratio, group.step(round_to))


def lowest_scored(group: Group, scores: Mapping[int, float], keep: int) -> list[int]:
    """The prunable classes of `group` to remove so that `keep` remain: the lowest-scored ones."""
    fixed = group.size - group.num_prunable
    keep = max(keep, fixed, 1)
    removable = [c for c, prunable in zip(group.classes, group.prunable) if prunable]
    removable.sort(key=lambda class_id: scores.get(class_id, 0.0))
    return removable[: max(0, group.size - keep)]


@dataclass(frozen=True)
class UniformRatio:
    """Removes the same share of channels from every prunable group.

    Example:
        >>> UniformRatio(0.5).select(graph, scores, round_to=8)
    """

    ratio: float

    def select(self, graph: ChannelGraph, scores: Mapping[int, float], round_to: int) -> list[int]:
        removed = []
        for group in graph.prunable_groups():
            removed += lowest_scored(group, scores, _kept_in_group(group, self.ratio, round_to))
        return removed


@dataclass(frozen=True)
class LayerRatios:
    """A ratio per layer name; each applies to the group that holds that layer's output channels.

    Groups of layers not named are left alone. Two names in one group take the larger ratio.

    Example:
        >>> LayerRatios({"enc0a_conv": 0.5, "mid_a_conv": 0.75}).select(graph, scores, round_to=8)
    """

    ratios: Mapping[str, float]

    def select(self, graph: ChannelGraph, scores: Mapping[int, float], round_to: int) -> list[int]:
        by_group: dict[int, float] = {}
        for name, ratio in self.ratios.items():
            group = graph.group_of_layer(name)
            if group.num_prunable == 0:
                raise ValueError(f"Layer {name!r} produces channels that may not be pruned (a model output, input or ignored layer).")
            by_group[group.index] = max(ratio, by_group.get(group.index, 0.0))
        removed = []
        for index, ratio in by_group.items():
            group = graph.groups[index]
            removed += lowest_scored(group, scores, _kept_in_group(group, ratio, round_to))
        return removed


@dataclass(frozen=True)
class GlobalRanking:
    """Ranks all prunable channels of all groups together and removes the lowest `ratio` of them.

    Scores are compared after dividing each group's by its mean, so groups keep their relative order
    inside and no single group's scale dominates; `normalize=False` compares raw scores (network
    slimming's global threshold on |gamma|, L0 gate probabilities). Each group's kept count is then rounded
    to `round_to`.
    """

    ratio: float
    normalize: bool = True

    def select(self, graph: ChannelGraph, scores: Mapping[int, float], round_to: int) -> list[int]:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"A pruning ratio must be in [0, 1), got {self.ratio}.")
        candidates = []
        for group in graph.prunable_groups():
            values = np.array([scores.get(c, 0.0) for c in group.classes])
            mean = values.mean() if self.normalize and values.mean() > 0 else 1.0
            candidates += [(value / mean, group.index, c) for value, c, ok in zip(values, group.classes, group.prunable) if ok]
        candidates.sort()
        budget = int(self.ratio * len(candidates))
        proposed: dict[int, int] = {}
        for _, group_index, _ in candidates[:budget]:
            proposed[group_index] = proposed.get(group_index, 0) + 1
        removed = []
        for index, count in proposed.items():
            group = graph.groups[index]
            removed += lowest_scored(group, scores, _kept_in_group(group, min(count / group.size, 0.999), round_to))
        return removed


Strategy = UniformRatio | LayerRatios | GlobalRanking


def as_strategy(ratio: float | Mapping[str, float] | Strategy) -> Strategy:
    """A float means `UniformRatio`, a mapping means `LayerRatios`; strategy objects pass through."""
    if isinstance(ratio, (UniformRatio, LayerRatios, GlobalRanking)):
        return ratio
    if isinstance(ratio, Mapping):
        return LayerRatios(dict(ratio))
    if isinstance(ratio, (int, float)):
        return UniformRatio(float(ratio))
    raise TypeError(f"ratio must be a float, a dict of layer name to ratio, or a selection strategy; got {ratio!r}.")
