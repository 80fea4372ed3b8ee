"""Before/after tables for a pruned model: channels, MACs and parameters per layer."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from segprune.cost import flops


@dataclass(frozen=True)
class LayerChange:
    name: str
    class_name: str
    channels_before: int
    channels_after: int
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int


@dataclass(frozen=True)
class PruningSummary:
    """Per-layer and total cost of a model before and after pruning, at one input size."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerChange, ...]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    @property
    def params_ratio(self) -> float:
        return self.params_after / self.params_before if self.params_before else 1.0

    def changed_layers(self) -> list[LayerChange]:
        return [layer for layer in self.layers if layer.channels_before != layer.channels_after or layer.params_before != layer.params_after]


def pruning_summary(original: keras.Model, pruned: keras.Model, input_shape: tuple[int, int] = (256, 256)) -> PruningSummary:
    """Compares `pruned` with `original` layer by layer (matched by name, nested names included).

    Example:
        >>> summary = pruning_summary(model, smaller)
        >>> f"{summary.macs_ratio:.2f}"
        '0.26'
    """
    before, after = flops(original, input_shape), flops(pruned, input_shape)  # flops prices the plain graph: composites' insides count
    pruned_layers = _per_layer(after.layers)
    rows = []
    for name, (class_name, channels, macs, params) in _per_layer(before.layers).items():
        if name not in pruned_layers:
            continue
        _, channels_after, macs_after, params_after = pruned_layers[name]
        rows.append(LayerChange(name, class_name, channels, channels_after, macs, macs_after, params, params_after))
    return PruningSummary(tuple(input_shape), tuple(rows), before.macs, after.macs, before.params, after.params)


def _per_layer(costs) -> dict[str, tuple[str, int, int, int]]:
    """Class, output channels, MACs and parameters per layer name; a layer called several times (a head shared
    across pyramid levels) is one entry with the MACs of all its calls."""
    layers: dict[str, tuple[str, int, int, int]] = {}
    for cost in costs:
        class_name, channels, macs, params = layers.get(cost.name, (cost.class_name, int(cost.output_shape[-1] or 0), 0, 0))
        layers[cost.name] = (class_name, channels, macs + cost.macs, params + cost.params)
    return layers
