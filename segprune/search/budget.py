"""A search's budget: the dense model's channel space, the resource its target names, and the limit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras

from segprune.cost.resources import BudgetUnreachable, Resource, counted_resource, parse_target, resource_after
from segprune.graph.groups import ChannelGraph
from segprune.graph.surgery import remove_channels
from segprune.runtime.latency import LatencyTable
from segprune.search.kinds import time_parents
from segprune.search.space import ChannelSpace, Configuration
from segprune.sizes import format_size

RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


class Budget:
    """The dense network's channel space, the resource a target names, and how far a configuration is from it.

    `graph` is the channel graph of the network a search narrows (a Mask R-CNN's trunk, SAM's image encoder: the
    rest is kept whole), traced at `settings.image_size`. `timer` turns networks into their ms as they ship
    (`kinds.network_timer`: a segmentation network alone, a Mask R-CNN's trunk inside its whole exported detector, so
    the table's untimed constant holds the heads, NMS and pasting); only a latency budget calls it.
    """

    def __init__(self, graph: ChannelGraph, settings, folder: Path, timer: Callable[[list[keras.Model]], list[float]]) -> None:
        self.timer = timer
        self.resource_name, self.fraction = parse_target(settings.target)
        self.space = ChannelSpace(graph, settings.round_to)
        narrowest = self.space.removed(self.space.narrowest())  # which channels go does not change what it costs
        self.resource: Resource
        self.latency_source = None
        if self.resource_name == "latency":
            self.resource = LatencyTable(
                settings.threads, path=folder / "latency_table.json", runtime=settings.runtime, precision=settings.precision,
                image_size=settings.image_size,
            )
            self._calibrate(narrowest, settings)
            self.latency_source = (
                f"per-layer {RUNTIME_NAMES[settings.runtime]} {settings.precision} latency table ({settings.threads} threads, "
                f"1x{format_size(settings.image_size)}), "
                "calibrated on the timed dense model"
            )
        else:
            self.resource = counted_resource(self.resource_name)
        self.dense_cost = float(resource_after(graph, [], self.resource))
        self.limit = self.fraction * self.dense_cost
        floor = float(resource_after(graph, narrowest, self.resource))
        if floor > self.limit:
            raise BudgetUnreachable(
                f"Target {settings.target} cannot be met: the narrowest configuration (round_to={settings.round_to}) keeps "
                f"{floor / self.dense_cost:.3f} of the {self.resource_name}. Lower round_to or raise the target.",
                floor / self.dense_cost,
            )

    def narrowest(self) -> Configuration:
        return self.space.narrowest()

    def _calibrate(self, narrowest: list[int], settings) -> None:
        """Times the dense and the narrowest model (without the channel classes `narrowest`) together: the first
        calibrates the table, the second says whether the target can be met at all on this runtime (a width of 8 may
        cost what 16 costs)."""
        table = self.resource
        if table.rest_ms is None or table.timed_floor is None:
            graph = self.space.graph
            dense_ms, narrowest_ms = self.timer([graph.model, remove_channels(graph, narrowest)])
            table.timed_floor = narrowest_ms / dense_ms
            table.calibrate(graph, dense_ms)
        if table.timed_floor > self.fraction:
            raise BudgetUnreachable(
                f"Target {settings.target} cannot be met on this runtime: even the narrowest configuration "
                f"(every group at its smallest width, round_to={settings.round_to}) times at {table.timed_floor:.3f} of the "
                "dense model's latency. Raise the target, or lower round_to.",
                table.timed_floor,
            )

    def cost(self, config: Configuration) -> float:
        return self.space.resource(config, self.resource)

    def share(self, config: Configuration) -> float:
        return self.cost(config) / self.dense_cost


def measure(dense: keras.Model, pruned: keras.Model, settings) -> dict:
    """The dense and the pruned model as they ship (a Mask R-CNN's whole exported detectors) timed together at the search's
    image size and threads."""
    dense_ms, pruned_ms = time_parents([dense, pruned], settings)
    return {"dense_ms": dense_ms, "pruned_ms": pruned_ms, "speedup": dense_ms / pruned_ms, "latency_fraction": pruned_ms / dense_ms}
