"""The cost layer: MACs and parameters per layer, and what a channel configuration costs.

`layers.py` counts a model's MACs and parameters at one input size; `resources.py` prices a channel graph
with some channels removed (the `Resource` protocol, implemented here for MACs and parameters and by
`segprune.runtime.latency.LatencyTable` for measured latency) and parses budgets such as `flops=0.25`.
"""

from segprune.cost.layers import CostReport, LayerCost, flops, layer_macs, layer_other_ops
from segprune.cost.resources import (
    RESOURCES,
    Macs,
    Params,
    Resource,
    Target,
    counted_resource,
    macs_after,
    narrowed_shapes,
    params_after,
    parse_target,
    resource_after,
)

__all__ = [
    "RESOURCES",
    "CostReport",
    "LayerCost",
    "Macs",
    "Params",
    "Resource",
    "Target",
    "counted_resource",
    "flops",
    "layer_macs",
    "layer_other_ops",
    "macs_after",
    "narrowed_shapes",
    "params_after",
    "parse_target",
    "resource_after",
]
