"""Resource budgets: what a channel configuration costs, computed from the graph without rebuilding."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable
from pathlib import Path

import keras

import numpy as np

from segprune.cost import layer_macs

from segprune.graph.channels import handler_for
from segprune.graph.groups import ChannelGraph, build_channel_graph
from segprune.graph.surgery import kept_positions
from segprune.search.space import ChannelSpace, Configuration

RESOURCES = ("flops", "params", "latency")


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


def narrowed_shapes(call, inputs: list[np.ndarray], outputs: list[np.ndarray], removed: np.ndarray) -> tuple[tuple, tuple]:
    """A call's first input and output shapes once `removed` (a sorted array of classes) are gone."""
    return (
        tuple(_narrowed(call.input_shapes[0], inputs[0], removed)) if inputs else (),
        tuple(_narrowed(call.output_shapes[0], outputs[0], removed)) if outputs else (),
    )


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
    if resource == "latency":
        raise ValueError("A latency target needs a measured latency model; use `segprune prune --method greedy|random-search`.")
    raise ValueError(f"Unknown resource {resource!r}; choose one of {list(RESOURCES)}.")


def _narrowed(shape: tuple, classes: np.ndarray, removed: np.ndarray) -> tuple:
    if not shape or len(classes) != shape[-1]:
        return shape
    return (*shape[:-1], int(np.count_nonzero(~np.isin(classes, removed))))


class Budget:
    """The dense model's channel space, the resource a target names, and how far a configuration is from it."""

    def __init__(self, model: keras.Model, settings, folder: Path) -> None:
        self.resource_name, self.fraction = parse_target(settings.target)
        graph = build_channel_graph(model, input_shape=(settings.image_size, settings.image_size))
        self.space = ChannelSpace(graph, settings.round_to)
        self.latency_source = None
        if self.resource_name == "latency":
            from segprune.search.latency import LatencyTable

            self.resource = LatencyTable(settings.threads, path=folder / "latency_table.json")
            self._calibrate(model, settings)
            self.latency_source = (
                f"per-layer ONNX Runtime latency table ({settings.threads} threads, 1x{settings.image_size}x{settings.image_size}), "
                "calibrated on the timed dense model"
            )
        else:
            self.resource = self.resource_name
        self.dense_cost = self.space.resource({}, self.resource)
        self.limit = self.fraction * self.dense_cost
        floor = self.space.resource(self.narrowest(), self.resource)
        if floor > self.limit:
            raise ValueError(
                f"Target {settings.target} cannot be met: the narrowest configuration (round_to={settings.round_to}) keeps "
                f"{floor / self.dense_cost:.3f} of the {self.resource_name}. Lower round_to or raise the target."
            )

    def narrowest(self) -> Configuration:
        return {key: self.space.widths(key)[0] for key in self.space.groups}

    def _calibrate(self, model: keras.Model, settings) -> None:
        """Times the dense and the narrowest model together: the first calibrates the table, the second says
        whether the target can be met at all on this runtime (a width of 8 may cost what 16 costs)."""
        table = self.resource
        if table.rest_ms is None or table.timed_floor is None:
            from segprune.search.space import shrink

            dense_ms, narrowest_ms = time_models([model, shrink(model, self.space.dense(), self.narrowest())], settings)
            table.timed_floor = narrowest_ms / dense_ms
            table.calibrate(self.space.graph, dense_ms)
        if table.timed_floor > self.fraction:
            raise ValueError(
                f"Target {settings.target} cannot be met on this runtime: even the narrowest configuration "
                f"(every group at its smallest width, round_to={settings.round_to}) times at {table.timed_floor:.3f} of the "
                "dense model's latency. Raise the target, or lower round_to."
            )

    def cost(self, config: Configuration) -> float:
        return self.space.resource(config, self.resource)

    def share(self, config: Configuration) -> float:
        return self.cost(config) / self.dense_cost


def time_models(models: list[keras.Model], settings) -> list[float]:
    """Median ONNX Runtime latency (ms) of each model, interleaved in one run."""
    from segprune.runtime.benchmark import onnx_latency
    from segprune.runtime.export import export_onnx

    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index, model in enumerate(models):
            path = Path(folder) / f"model{index}.onnx"
            export_onnx(model, path)
            paths.append(path)
        return [latency.median_ms for latency in onnx_latency(paths, settings.image_size, threads=settings.threads)]


def measure(dense: keras.Model, pruned: keras.Model, settings) -> dict:
    dense_ms, pruned_ms = time_models([dense, pruned], settings)
    return {"dense_ms": dense_ms, "pruned_ms": pruned_ms, "speedup": dense_ms / pruned_ms, "latency_fraction": pruned_ms / dense_ms}
