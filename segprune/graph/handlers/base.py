"""The handler contract: what every layer kind tells segprune, and the helpers handlers share.

A handler answers, for its layer kind:

* `couple`: given the channel *elements* of each input tensor (one int per channel position), which
  elements make up each output tensor? A producer (Conv2D, Dense...) creates fresh elements; a
  channel-wise layer (BatchNorm, ReLU, pooling...) passes its input's through; an element-wise merge
  declares its inputs' elements equal. Equal elements are pruned together.
* `channel_axes` and `edit_call_config`: which weight axes run over which channels, and the smaller
  layer's config once channels are gone (the surgery slices the weights along those axes).
* `macs`, `other_ops`, `params`: what one call costs, read from the call's shapes.
* `sparse_kernels`: which kernels magnitude pruning may sparsify, and the axis each sums over.
* `latency_kind`: the one-node graph a latency table times the layer as, if any.

Attention splits channels into heads on another axis. For it, the graph describes every tensor by an
*element array* over all its non-batch axes, of size 1 on an axis that carries no channels: (1, 1, C) for a
(batch, height, width, C) map, (heads, 1, head_size) for per-head queries (batch, heads, tokens, head_size).
Handlers that read channels on the last axis alone implement `couple`; reshape, transpose, matmul and
softmax implement `couple_layout` on the arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import keras
import numpy as np

from segprune.backend._keras_internals import LayerCall


class UnsupportedLayerError(TypeError):
    """A layer whose channel behaviour segprune does not know."""


class ChannelBuilder(Protocol):
    """What handlers may ask of the graph under construction."""

    def fresh(self, layer: keras.layers.Layer, count: int) -> list[int]:
        """New elements for a producer's outputs (the same ones on every call of a shared layer)."""

    def new(self, count: int, owner: str) -> list[int]:
        """New elements owned by `owner`, distinct on every call (a pinned layer's outputs)."""

    def union(self, first: Sequence[int], second: Sequence[int]) -> None:
        """Declares two equally long element lists equal position by position."""

    def fix(self, elements: Sequence[int]) -> None:
        """Marks elements as never prunable."""

    def require_multiple(self, elements: Sequence[int], multiple: int) -> None:
        """Demands that the kept count of these elements' group stay a multiple of `multiple`."""


class ChannelAxis(NamedTuple):
    """One axis of one of a layer's weights that runs over the channels of one of its tensors.

    Attributes:
        weight: The variable's name within the layer ("kernel", "bias", "gamma", ...).
        side: `"input"` (channels the layer reads) or `"output"` (channels it writes).
        axis: The weight's axis that runs over those channels.
        positions: For each entry along that axis, the channel position of the tensor it belongs to (a
            separable conv's pointwise kernel holds `depth_multiplier` entries per input channel; a grouped
            conv's kernel holds one group's input channels, standing for every group's).
        kind: `"kernel"` for weights whose slices are the filters a channel is read or written with (what
            weight-norm criteria measure), `"vector"` for per-channel parameters (bias, scale, statistics).
        tensor: Which input (or output) tensor of the layer, in call order.
    """

    weight: str
    side: str
    axis: int
    positions: np.ndarray
    kind: str = "kernel"
    tensor: int = 0


class ChannelHandler:
    """Base handler: subclasses override `couple`, `channel_axes`/`edit_config` where weights exist, and the
    cost, sparse and latency answers where the layer has any.

    `channel_axes` is the one description of a layer's weights that the rest of segprune reads: the surgery
    slices them with it, importance criteria measure filters with it, the exactness harness zeroes inputs
    with it. `mean_response` is what bias compensation needs from a layer that mixes channels.
    """

    def couple(self, call: LayerCall, inputs: list[list[int]], builder: ChannelBuilder) -> list[list[int]]:
        raise NotImplementedError

    def couple_layout(self, call: LayerCall, inputs: list[np.ndarray], builder: ChannelBuilder) -> list[np.ndarray]:
        """`couple` on element arrays (see the module docstring); by default channels must lie on the last axis."""
        for shape, elements in zip(call.input_shapes, inputs):
            if not is_last_axis(elements):
                raise UnsupportedLayerError(
                    f"Layer {call.layer.name!r} ({type(call.layer).__name__}) reads a tensor of shape {shape} whose "
                    f"channels span several axes {elements.shape} (attention heads); its handler reads channels on the "
                    "last axis only. Register a handler that implements couple_layout, or keep these channels with ignore=[...]."
                )
        outputs = self.couple(call, [[int(e) for e in elements.ravel()] for elements in inputs], builder)
        return [on_last_axis(elements, len(shape)) for elements, shape in zip(outputs, call.output_shapes)]

    def edit_config(self, config: dict, kept_in: list[np.ndarray], kept_out: list[np.ndarray]) -> dict:
        return config

    def edit_call_config(self, call: LayerCall, config: dict, kept_in: list[np.ndarray], kept_out: list[np.ndarray]) -> dict:
        """The pruned layer's config; handlers whose edit depends on the call's shapes override this."""
        return self.edit_config(config, kept_in, kept_out)

    def channel_axes(self, call: LayerCall) -> list[ChannelAxis]:
        """Which weights of the called layer run over which channels; weights not listed have none."""
        return []

    def mean_response(self, call: LayerCall) -> np.ndarray | None:
        """(input channels, output channels): how far each output channel's mean moves per unit of each input
        channel's mean, borders aside; None for a layer that does not mix channels linearly."""
        return None

    def slice_weights(self, call: LayerCall, kept_in: list[np.ndarray], kept_out: list[np.ndarray]) -> list[np.ndarray]:
        """The layer's weights with the entries of removed channels dropped along every axis `channel_axes` lists."""
        axes_of: dict[str, list[ChannelAxis]] = {}
        for channel_axis in self.channel_axes(call):
            axes_of.setdefault(channel_axis.weight, []).append(channel_axis)
        sliced = []
        for variable in layer_weights(call.layer):
            value = keras.ops.convert_to_numpy(variable)
            for channel_axis in axes_of.get(weight_name(variable), []):
                kept = (kept_in if channel_axis.side == "input" else kept_out)[channel_axis.tensor]
                entries = np.flatnonzero(np.isin(channel_axis.positions, kept))
                value = np.take(value, entries, axis=channel_axis.axis)
            sliced.append(value)
        return sliced

    def macs(self, call: LayerCall) -> int:
        """Multiply-accumulates of one call, read from the call's shapes (so a call whose shapes describe a
        pruned width gives the pruned cost); 0 for a layer that multiplies no weights with its inputs."""
        return 0

    def other_ops(self, call: LayerCall) -> int:
        """Element-wise work of one call counted apart from MACs (normalisation, pooling, merges)."""
        return 0

    def params(self, layer: keras.layers.Layer) -> int:
        """Parameters of the layer: the sizes of all its weights."""
        return sum(math.prod(variable.shape) for variable in layer_weights(layer))

    def sparse_kernels(self, layer: keras.layers.Layer) -> list[tuple[str, int | None]]:
        """(weight name, reduction axis) of each kernel magnitude pruning may sparsify: the axis the layer sums
        over per output, along which N:M groups run (None where there is none, as in depthwise kernels)."""
        return []

    def latency_kind(self, layer: keras.layers.Layer) -> str | None:
        """The one-node graph a latency table times this layer as ("conv", "depthwise", "separable",
        "transpose", "dense"); None puts the layer in the table's untimed remainder."""
        return None


def is_last_axis(elements: np.ndarray) -> bool:
    """Whether an element array has its channels on the last axis alone."""
    return all(size == 1 for size in elements.shape[:-1])


def on_last_axis(elements: Sequence[int], rank: int) -> np.ndarray:
    """The element array of a rank-`rank` tensor (batch included) whose channels are its last axis."""
    return np.asarray(elements, dtype=np.int64).reshape((1,) * max(rank - 2, 0) + (-1,))


def layer_weights(operation) -> list:
    """The variables of a layer; none for a bare operation (`x + y` in functional code)."""
    return list(getattr(operation, "weights", []))


def weight_name(variable) -> str:
    """A variable's own name within its layer: "kernel", "bias", "gamma", ..."""
    return variable.path.rsplit("/", 1)[-1]


def weight_shape(layer: keras.layers.Layer, name: str) -> tuple[int, ...] | None:
    """The shape of the layer's weight called `name`; None where it has none (a conv without bias)."""
    for variable in layer_weights(layer):
        if weight_name(variable) == name:
            return tuple(variable.shape)
    return None


def kernel_value(layer: keras.layers.Layer, name: str) -> np.ndarray:
    """The layer's weight called `name`, as NumPy."""
    return next(keras.ops.convert_to_numpy(v) for v in layer_weights(layer) if weight_name(v) == name)


def mixes_channels(activation) -> bool:
    """Whether an activation normalises over channels (softmax), so the channels it reads are never pruned through."""
    return getattr(activation, "__name__", "") in ("softmax", "log_softmax")
