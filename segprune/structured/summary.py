"""Before/after tables for a pruned model: channels, MACs and parameters per layer."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from segprune.cost import flops
from segprune.graph.groups import PINNED_FIX, Pin, build_channel_graph


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
    """Per-layer and total cost of a model before and after pruning, at one input size, and the layers whose
    channels were kept whole (pinned) because segprune cannot tell how they couple channels."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerChange, ...]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    pinned: tuple[Pin, ...] = ()

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    @property
    def params_ratio(self) -> float:
        return self.params_after / self.params_before if self.params_before else 1.0

    def changed_layers(self) -> list[LayerChange]:
        return [layer for layer in self.layers if layer.channels_before != layer.channels_after or layer.params_before != layer.params_after]

    def pinned_lines(self) -> list[str]:
        """The pinned layers, one line each with the reason, then how to prune through them; none if none.

        Example:
            >>> print("\n".join(summary.pinned_lines()))
            pinned (channels in and out kept whole): 1 layer
              get_item: no channel handler for class keras.src.ops.numpy.GetItem
            to prune through a pinned layer, register a handler for its class, ...
        """
        if not self.pinned:
            return []
        count = f"{len(self.pinned)} layer" + ("s" if len(self.pinned) > 1 else "")
        return [f"pinned (channels in and out kept whole): {count}", *(f"  {pin.name}: {pin.reason}" for pin in self.pinned), PINNED_FIX]


def pruning_summary(
    original: keras.Model, pruned: keras.Model, input_shape: tuple[int, int] = (256, 256), pinned: tuple[Pin, ...] | None = None
) -> PruningSummary:
    """Compares `pruned` with `original` layer by layer (matched by name, nested names included).

    `pinned` lists the layers kept whole (`ChannelGraph.pinned`); by default read from `original`'s channel graph.

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
    if pinned is None:
        pinned = build_channel_graph(original, input_shape=tuple(input_shape)).pinned
    return PruningSummary(tuple(input_shape), tuple(rows), before.macs, after.macs, before.params, after.params, tuple(pinned))


def _per_layer(costs) -> dict[str, tuple[str, int, int, int]]:
    """Class, output channels, MACs and parameters per layer name; a layer called several times (a head shared
    across pyramid levels) is one entry with the MACs of all its calls."""
    layers: dict[str, tuple[str, int, int, int]] = {}
    for cost in costs:
        class_name, channels, macs, params = layers.get(cost.name, (cost.class_name, int(cost.output_shape[-1] or 0), 0, 0))
        layers[cost.name] = (class_name, channels, macs + cost.macs, params + cost.params)
    return layers
