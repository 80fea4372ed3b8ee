"""The search space of structured pruning: a kept width for every prunable group of the dense model.

A *configuration* maps each group's key (its producers' names, stable when the model is rebuilt smaller)
to the number of channels it keeps. Widths are multiples of `round_to` (and of the group's own divisibility
constraint), as everywhere in segprune. Which channels realise a width is decided later, by an importance
criterion on the model being pruned.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras

from segprune.cost.resources import Resource, resource_after
from segprune.graph.groups import ChannelGraph, Group, build_channel_graph
from segprune.graph.surgery import remove_channels
from segprune.models.loading import copy_model
from segprune.structured.importance import channel_importance
from segprune.structured.selection import lowest_scored

Configuration = dict[str, int]


def group_key(group: Group) -> str:
    return ",".join(sorted(set(group.producers)))


class ChannelSpace:
    """Allowed widths per group of a dense model's channel graph, and what a configuration costs.

    Args:
        graph: The dense model's channel graph, traced at the image size resources are measured at.
        round_to: Kept widths are multiples of this.

    Example:
        >>> space = ChannelSpace(build_channel_graph(model, input_shape=(256, 256)), round_to=8)
        >>> space.resource(space.dense(), "flops") == space.resource({}, "flops")
        True
    """

    def __init__(self, graph: ChannelGraph, round_to: int = 8) -> None:
        if round_to < 1:
            raise ValueError(f"round_to must be >= 1, got {round_to}.")
        self.graph = graph
        self.round_to = round_to
        self.groups: dict[str, Group] = {}
        self._widths: dict[str, list[int]] = {}  # read once: what a configuration may hold never changes
        for group in graph.prunable_groups():
            key = group_key(group)
            if key in self.groups:
                key = f"{key}#{group.index}"
            allowed = group.allowed_widths(round_to)
            if allowed:
                self.groups[key] = group
                self._widths[key] = allowed

    def widths_of(self, group: Group) -> list[int]:
        """Allowed kept counts of a group, smallest first (none if it cannot shrink: `Group.allowed_widths`)."""
        return group.allowed_widths(self.round_to)

    def widths(self, key: str) -> list[int]:
        return list(self._widths[key])

    def dense(self) -> Configuration:
        return {key: group.size for key, group in self.groups.items()}

    def narrowest(self) -> Configuration:
        """Every group at its smallest allowed width."""
        return {key: widths[0] for key, widths in self._widths.items()}

    def removed(self, config: Mapping[str, int]) -> list[int]:
        """Some channel classes whose removal gives these widths (for costing: which ones does not matter)."""
        removed = []
        for key, width in config.items():
            group = self.groups[key]
            allowed = self._widths[key]
            if width not in allowed:
                raise ValueError(f"Width {width} is not allowed for group {key!r}; allowed: {allowed}.")
            prunable = [c for c, ok in zip(group.classes, group.prunable) if ok]
            removed += prunable[len(prunable) - (group.size - width):] if width < group.size else []
        return removed

    def resource(self, config: Mapping[str, int], resource: str | Resource) -> float:
        """The resource of the dense model pruned to `config` (`resource` is `flops`, `params` or a `Resource`)."""
        return float(resource_after(self.graph, self.removed(config), resource))


def shrink(
    model: keras.Model, current: Mapping[str, int], wanted: Mapping[str, int], importance: str = "l1", data=None, graph: ChannelGraph | None = None
) -> keras.Model:
    """`model` (whose groups have the `current` widths) rebuilt with the `wanted` widths.

    In every group that shrinks, the channels with the lowest importance on `model` go. Groups are matched
    by key, so `model` may be an already-pruned, fine-tuned descendant of the dense model. `graph` is
    `model`'s channel graph (at any input size, no layer ignored) when the caller has built it already.
    """
    if all(wanted.get(key, width) == width for key, width in current.items()):
        return copy_model(model)
    if graph is None:
        graph = build_channel_graph(model)
    by_key: dict[str, Group] = {}
    for group in graph.prunable_groups():
        key = group_key(group)
        by_key[key if key not in by_key else f"{key}#{group.index}"] = group
    scores = channel_importance(graph, importance, data)
    removed = []
    for key, width in wanted.items():
        if width >= current.get(key, width):
            continue
        if key not in by_key:
            raise KeyError(f"Group {key!r} is not prunable in model {model.name!r}.")
        group = by_key[key]
        if group.size != current[key]:
            raise ValueError(f"Group {key!r} has {group.size} channels in the model, but the configuration says {current[key]}.")
        removed += lowest_scored(group, scores, width)
    return remove_channels(graph, removed)
