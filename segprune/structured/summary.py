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
    before = flops(original, input_shape)  # flops prices the plain graph: composite layers' insides count too
    after = {layer.name: layer for layer in flops(pruned, input_shape).layers}
    rows = []
    for layer in before.layers:
        other = after.get(layer.name)
        if other is None:
            continue
        rows.append(
            LayerChange(
                name=layer.name,
                class_name=layer.class_name,
                channels_before=int(layer.output_shape[-1] or 0),
                channels_after=int(other.output_shape[-1] or 0),
                macs_before=layer.macs,
                macs_after=other.macs,
                params_before=layer.params,
                params_after=other.params,
            )
        )
    return PruningSummary(tuple(input_shape), tuple(rows), before.macs, sum(layer.macs for layer in after.values()), before.params, sum(layer.params for layer in after.values()))
