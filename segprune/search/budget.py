"""Resource budgets: what a channel configuration costs, computed from the graph without rebuilding."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from segprune.cost import layer_macs
from segprune.graph.channels import handler_for
from segprune.graph.groups import ChannelGraph
from segprune.graph.surgery import kept_positions

RESOURCES = ("flops", "params")


def parse_target(text: str) -> tuple[str, float]:
    """`"flops=0.25"` -> ("flops", 0.25): a resource and the fraction of the dense model's to keep.

    Example:
        >>> parse_target("params=0.5")
        ('params', 0.5)
    """
    name, _, value = text.partition("=")
    name = name.strip().lower()
    if name not in RESOURCES or not value:
        raise ValueError(f"A target reads RESOURCE=FRACTION with RESOURCE in {list(RESOURCES)}, e.g. flops=0.25; got {text!r}.")
    try:
        fraction = float(value)
    except ValueError:
        raise ValueError(f"Target fraction {value!r} is not a number.") from None
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"A target fraction must be in (0, 1], got {fraction}.")
    return name, fraction


def macs_after(graph: ChannelGraph, removed: Iterable[int]) -> int:
    """Multiply-accumulates of the model without `removed`, at the shapes the graph was traced with."""
    removed_array = np.array(sorted(set(removed)), dtype=np.int64)
    total = 0
    for call, inputs, outputs in zip(graph.trace.calls, graph.call_inputs, graph.call_outputs):
        input_shapes = tuple(_narrowed(shape, classes, removed_array) for shape, classes in zip(call.input_shapes, inputs))
        output_shapes = tuple(_narrowed(shape, classes, removed_array) for shape, classes in zip(call.output_shapes, outputs))
        total += layer_macs(dataclasses.replace(call, input_shapes=input_shapes, output_shapes=output_shapes))
    return total


def params_after(graph: ChannelGraph, removed: Iterable[int]) -> int:
    """Parameters of the model without `removed`."""
    return sum(
        int(w.size)
        for call, (kept_in, kept_out) in kept_positions(graph, removed).values()
        for w in handler_for(call.layer).slice_weights(call, kept_in, kept_out)
    )


def resource_after(graph: ChannelGraph, removed: Iterable[int], resource: str) -> int:
    if resource == "flops":
        return macs_after(graph, removed)
    if resource == "params":
        return params_after(graph, removed)
    raise ValueError(f"Unknown resource {resource!r}; choose one of {list(RESOURCES)}.")


def _narrowed(shape: tuple, classes: np.ndarray, removed: np.ndarray) -> tuple:
    if not shape or len(classes) != shape[-1]:
        return shape
    return (*shape[:-1], int(np.count_nonzero(~np.isin(classes, removed))))
