"""What a channel configuration costs: targets, and resources that price a channel graph with channels removed.

A *resource* answers one question: what does the model behind this channel graph cost once these channel
classes are gone? MACs and parameters are computed here from the graph alone, without rebuilding the model;
measured latency (`segprune.runtime.latency.LatencyTable`) implements the same protocol. Pruning methods and
searches depend on the protocol only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import NamedTuple, Protocol

import numpy as np

from segprune.cost.layers import layer_macs
from segprune.graph.groups import ChannelGraph
from segprune.graph.surgery import kept_positions

RESOURCES = ("flops", "params", "latency")


class Target(NamedTuple):
    """A budget: keep `fraction` of the dense model's `resource` (`flops` counts MACs)."""

    resource: str
    fraction: float

    def __str__(self) -> str:
        return f"{self.resource}={self.fraction:g}"


class BudgetUnreachable(ValueError):
    """A budget that pruning cannot reach: every group pruned as far as `round_to` allows still keeps `reachable` (a
    fraction of the dense resource). Callers that walk budgets (`segprune optimize`) try `reachable` instead."""

    def __init__(self, message: str, reachable: float) -> None:
        super().__init__(message)
        self.reachable = reachable


def parse_target(text: str | Target) -> Target:
    """`"flops=0.25"` -> Target("flops", 0.25): a resource and the fraction of the dense model's to keep.

    Example:
        >>> parse_target("params=0.5")
        Target(resource='params', fraction=0.5)
    """
    if isinstance(text, Target):
        return text
    if not isinstance(text, str):
        raise TypeError(f"A target is a string such as 'flops=0.25'; got {type(text).__name__} {text!r}.")
    name, _, value = text.partition("=")
    name = name.strip().lower()
    if name not in RESOURCES or not value:
        raise ValueError(
            f"A target reads RESOURCE=FRACTION with RESOURCE in {list(RESOURCES)}, e.g. flops=0.25; got {text!r}."
        )
    try:
        fraction = float(value)
    except ValueError:
        raise ValueError(f"Target fraction {value!r} in {text!r} is not a number; write e.g. flops=0.25.") from None
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"A target fraction must be in (0, 1], got {fraction} in {text!r}.")
    return Target(name, fraction)


class Resource(Protocol):
    """Prices the model behind a channel graph once some channel classes are removed."""

    def cost(self, graph: ChannelGraph, removed: Iterable[int]) -> float:
        """The resource of `graph`'s model without the channel classes `removed`."""


class Macs:
    """Multiply-accumulates at the input shape the graph was traced with."""

    name = "flops"

    def cost(self, graph: ChannelGraph, removed: Iterable[int]) -> float:
        return float(macs_after(graph, removed))


class Params:
    """Parameters (every weight, trainable or not)."""

    name = "params"

    def cost(self, graph: ChannelGraph, removed: Iterable[int]) -> float:
        return float(params_after(graph, removed))


def counted_resource(name: str) -> Resource:
    """The resource a target names, for the resources computed from the graph (`flops`, `params`).

    Latency is measured, not counted: build a `segprune.runtime.latency.LatencyTable` for it.
    """
    if name == "flops":
        return Macs()
    if name == "params":
        return Params()
    if name == "latency":
        raise ValueError(
            "A latency target needs a measured latency table; use a search method "
            "(segprune.prune(..., method='greedy' or 'random-search', target='latency=F'))."
        )
    raise ValueError(f"Unknown resource {name!r}; choose one of {list(RESOURCES)}.")


def resource_after(graph: ChannelGraph, removed: Iterable[int], resource: str | Resource) -> float:
    """The cost of `graph`'s model without `removed`, for a resource given by name or as a `Resource`."""
    priced = counted_resource(resource) if isinstance(resource, str) else resource
    return priced.cost(graph, removed)


def macs_after(graph: ChannelGraph, removed: Iterable[int]) -> int:
    """Multiply-accumulates of the model without `removed`, at the shapes the graph was traced with."""
    removed_array = np.array(sorted(set(removed)), dtype=np.int64)
    total = 0
    layouts = graph.layouts or [([None] * len(inputs), [None] * len(outputs)) for inputs, outputs in zip(graph.call_inputs, graph.call_outputs)]
    for call, inputs, outputs, (input_layouts, output_layouts) in zip(graph.trace.calls, graph.call_inputs, graph.call_outputs, layouts):
        input_shapes = tuple(_narrowed(*entry, removed_array) for entry in zip(call.input_shapes, inputs, input_layouts))
        output_shapes = tuple(_narrowed(*entry, removed_array) for entry in zip(call.output_shapes, outputs, output_layouts))
        total += layer_macs(dataclasses.replace(call, input_shapes=input_shapes, output_shapes=output_shapes))
    return total


def params_after(graph: ChannelGraph, removed: Iterable[int]) -> int:
    """Parameters of the model without `removed`."""
    return sum(
        int(weight.size)
        for call, (kept_in, kept_out) in kept_positions(graph, removed).values()
        for weight in graph.handler(call).slice_weights(call, kept_in, kept_out)
    )


def narrowed_shapes(call, inputs: list[np.ndarray], outputs: list[np.ndarray], removed: np.ndarray) -> tuple[tuple, tuple]:
    """A call's first input and output shapes once `removed` (a sorted array of classes) are gone."""
    return (
        tuple(_narrowed(call.input_shapes[0], inputs[0], None, removed)) if inputs else (),
        tuple(_narrowed(call.output_shapes[0], outputs[0], None, removed)) if outputs else (),
    )


def _narrowed(shape: tuple, classes: np.ndarray, layout: tuple[int, ...] | None, removed: np.ndarray) -> tuple:
    """`shape` without the removed classes. With the tensor's element layout (`ChannelGraph.layouts`), every axis
    that carries channels keeps the entries some kept class sits on (attention scores (heads, 1, 1) lose whole
    heads); without it, channels on the last axis, or spread over the last two (heads, head size), where a head
    goes once all its classes are removed."""
    if not shape:
        return shape
    kept = ~np.isin(classes, removed)
    if layout is not None and len(layout) == len(shape) - 1 and math.prod(layout) == len(classes) > 0:
        kept = kept.reshape(layout)
        axes = range(len(layout))
        return (shape[0], *(size if layout[axis] == 1 else int(np.count_nonzero(kept.any(axis=tuple(a for a in axes if a != axis)))) for axis, size in enumerate(shape[1:])))
    if len(classes) == shape[-1]:
        return (*shape[:-1], int(np.count_nonzero(kept)))
    if len(shape) >= 3 and None not in shape[-2:] and len(classes) == shape[-2] * shape[-1] > 0:
        per_head = kept.reshape(shape[-2], shape[-1])
        return (*shape[:-2], int(np.count_nonzero(per_head.any(axis=1))), int(np.count_nonzero(per_head.any(axis=0))))
    return shape
