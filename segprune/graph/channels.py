"""How each layer kind couples and slices channels: one handler per layer class, in a public registry.

A handler answers two questions for its layer kind:

* `couple`: given the channel *elements* of each input tensor (one int per channel position), which
  elements make up each output tensor? A producer (Conv2D, Dense...) creates fresh elements; a
  channel-wise layer (BatchNorm, ReLU, pooling...) passes its input's through; an element-wise merge
  declares its inputs' elements equal. Equal elements are pruned together.
* `slice`: given the kept input and output positions, what are the smaller layer's config and weights?

A layer class with no handler is an error, never a guess: register one with `register_handler`.

Attention splits channels into heads on another axis. For it, the graph describes every tensor by an
*element array* over all its non-batch axes, of size 1 on an axis that carries no channels: (1, 1, C) for a
(batch, height, width, C) map, (heads, 1, head_size) for per-head queries (batch, heads, tokens, head_size).
Handlers that read channels on the last axis alone implement `couple`; reshape, transpose, matmul and
softmax implement `couple_layout` on the arrays.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import keras
import numpy as np

from segprune.backend._keras_internals import (
    LayerCall,
    application_channelwise_layers,
    attention_operations,
    concatenate_operation,
    elementwise_operations,
    fused_attention_operations,
    keras_hub_identity_layers,
    reduction_operations,
)


class UnsupportedLayerError(TypeError):
    """A layer whose channel behaviour segprune does not know."""


class ChannelBuilder(Protocol):
    """What handlers may ask of the graph under construction."""

    def fresh(self, layer: keras.layers.Layer, count: int) -> list[int]:
        """New elements for a producer's outputs (the same ones on every call of a shared layer)."""

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
    """Base handler: subclasses override `couple`, and `channel_axes`/`edit_config` where weights exist.

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


def _weight_shape(layer: keras.layers.Layer, name: str) -> tuple[int, ...] | None:
    for variable in layer_weights(layer):
        if weight_name(variable) == name:
            return tuple(variable.shape)
    return None


def _spatial_sum(kernel: np.ndarray, input_axis: int, output_axis: int) -> np.ndarray:
    """A kernel summed over every axis but its input and output channel axes: (inputs, outputs)."""
    moved = np.moveaxis(kernel, (input_axis, output_axis), (-2, -1))
    return moved.reshape(-1, *moved.shape[-2:]).sum(axis=0)


def _kernel_value(layer: keras.layers.Layer, name: str) -> np.ndarray:
    return next(keras.ops.convert_to_numpy(v) for v in layer_weights(layer) if weight_name(v) == name)


class DenseLikeHandler(ChannelHandler):
    """Conv2D, Conv1D and Dense: kernel (..., in, out), bias (out,).

    `input_axis` and `output_axis` say where the kernel keeps its channels (Conv2DTranspose swaps them).
    """

    def __init__(self, width_key: str, input_axis: int = -2, output_axis: int = -1) -> None:
        self.width_key = width_key
        self.input_axis = input_axis
        self.output_axis = output_axis

    def couple(self, call, inputs, builder):
        layer = call.layer
        outputs = builder.fresh(layer, call.output_shapes[0][-1])
        if _mixes_channels(getattr(layer, "activation", None)):
            builder.fix(outputs)
        return [outputs]

    def edit_config(self, config, kept_in, kept_out):
        config = dict(config)
        config[self.width_key] = int(len(kept_out[0]))
        return config

    def channel_axes(self, call):
        shape = _weight_shape(call.layer, "kernel")
        axes = [
            ChannelAxis("kernel", "input", self.input_axis, np.arange(shape[self.input_axis])),
            ChannelAxis("kernel", "output", self.output_axis, np.arange(shape[self.output_axis])),
        ]
        return axes + _bias_axis(call.layer, shape[self.output_axis])

    def mean_response(self, call):
        return _spatial_sum(_kernel_value(call.layer, "kernel"), self.input_axis, self.output_axis)


def _bias_axis(layer: keras.layers.Layer, outputs: int) -> list[ChannelAxis]:
    if _weight_shape(layer, "bias") is None:
        return []
    return [ChannelAxis("bias", "output", -1, np.arange(outputs), "vector")]


class ConvHandler(DenseLikeHandler):
    """Conv1D and Conv2D, grouped ones (`groups > 1`) included.

    A grouped conv with one input channel per group is a depthwise conv: output channel o reads input
    channel o // (outputs per group) alone, so they are pruned together and whole groups go (`groups` shrinks).
    Otherwise every group keeps the same positions: input position i of each group is one channel class,
    and so is output position j of each group, so each group loses the same channels and `groups` stays.
    """

    def __init__(self) -> None:
        super().__init__("filters")

    def couple(self, call, inputs, builder):
        layer = call.layer
        if layer.groups == 1:
            return super().couple(call, inputs, builder)
        groups, channels = layer.groups, len(inputs[0])
        per_input, per_output = channels // groups, call.output_shapes[0][-1] // groups
        if per_input == 1:
            outputs = [element for element in inputs[0] for _ in range(per_output)]
        else:
            for group in range(1, groups):
                builder.union(inputs[0][:per_input], inputs[0][group * per_input : (group + 1) * per_input])
            outputs = builder.fresh(layer, per_output) * groups
        if _mixes_channels(getattr(layer, "activation", None)):
            builder.fix(outputs)
        return [outputs]

    def edit_config(self, config, kept_in, kept_out):
        config = super().edit_config(config, kept_in, kept_out)
        # A depthwise-style conv keeps one group per kept input channel (at most `groups`); one whose groups
        # each keep the same positions reads a multiple of `groups` channels and keeps its `groups`.
        config["groups"] = min(int(config.get("groups", 1)), int(len(kept_in[0])))
        return config

    def channel_axes(self, call):
        if call.layer.groups == 1:
            return super().channel_axes(call)
        shape = _weight_shape(call.layer, "kernel")
        axes = [ChannelAxis("kernel", "output", -1, np.arange(shape[-1]))]
        if shape[-2] > 1:  # one group's input channels, standing for every group's (they are one class each)
            axes.append(ChannelAxis("kernel", "input", -2, np.arange(shape[-2])))
        return axes + _bias_axis(call.layer, shape[-1])

    def mean_response(self, call):
        response = super().mean_response(call)
        groups = call.layer.groups
        if groups == 1:
            return response
        per_input, outputs = response.shape
        per_output = outputs // groups
        full = np.zeros((per_input * groups, outputs), dtype=response.dtype)
        for group in range(groups):
            rows, columns = slice(group * per_input, (group + 1) * per_input), slice(group * per_output, (group + 1) * per_output)
            full[rows, columns] = response[:, columns]
        return full


class TransposeConvHandler(DenseLikeHandler):
    """Conv2DTranspose: kernel (kh, kw, out, in), bias (out,)."""

    def __init__(self) -> None:
        super().__init__("filters", input_axis=-1, output_axis=-2)

    def mean_response(self, call):
        return super().mean_response(call) / np.prod(call.layer.strides)  # each output pixel gets 1/stride^2 of the taps


class DepthwiseHandler(ChannelHandler):
    """DepthwiseConv2D: output channel c*m+k comes from input channel c alone, so they are pruned together."""

    def couple(self, call, inputs, builder):
        multiplier = call.layer.depth_multiplier
        return [[element for element in inputs[0] for _ in range(multiplier)]]

    def channel_axes(self, call):
        shape = _weight_shape(call.layer, "kernel")
        return [ChannelAxis("kernel", "input", 2, np.arange(shape[2]))] + _bias_axis(call.layer, shape[2] * shape[3])

    def mean_response(self, call):
        taps = _kernel_value(call.layer, "kernel").sum(axis=(0, 1))  # (channels, multiplier)
        channels, multiplier = taps.shape
        response = np.zeros((channels, channels * multiplier), dtype=taps.dtype)
        for channel in range(channels):
            response[channel, channel * multiplier : (channel + 1) * multiplier] = taps[channel]
        return response


class SeparableHandler(DenseLikeHandler):
    """SeparableConv2D: depthwise (kh, kw, in, m), pointwise (1, 1, in*m, out), bias (out,)."""

    def __init__(self) -> None:
        super().__init__("filters")

    def channel_axes(self, call):
        depthwise = _weight_shape(call.layer, "depthwise_kernel")
        pointwise = _weight_shape(call.layer, "pointwise_kernel")
        channels, multiplier = depthwise[2], depthwise[3]
        return [
            ChannelAxis("depthwise_kernel", "input", 2, np.arange(channels)),
            ChannelAxis("pointwise_kernel", "input", 2, np.repeat(np.arange(channels), multiplier)),
            ChannelAxis("pointwise_kernel", "output", 3, np.arange(pointwise[3])),
            *_bias_axis(call.layer, pointwise[3]),
        ]

    def mean_response(self, call):
        depthwise = _kernel_value(call.layer, "depthwise_kernel").sum(axis=(0, 1))  # (in, m)
        pointwise = _kernel_value(call.layer, "pointwise_kernel")[0, 0]  # (in*m, out)
        channels, multiplier = depthwise.shape
        return np.einsum("ck,cko->co", depthwise, pointwise.reshape(channels, multiplier, -1))


class ChannelwiseHandler(ChannelHandler):
    """Layers that act on each channel separately: outputs keep their input's channels.

    Weights whose last axis has one entry per channel (BatchNorm's gamma/beta/statistics, PReLU's alpha,
    Normalization's mean/variance) are sliced on it; other weights are kept. `width_key` names a config
    entry that holds the channel count, for layers that size their weights from the config (ConvNeXt's
    LayerScale has `projection_dim`).
    """

    def __init__(self, width_key: str | None = None) -> None:
        self.width_key = width_key

    def couple(self, call, inputs, builder):
        return [list(inputs[0])]

    def couple_layout(self, call, inputs, builder):
        # A weightless per-element layer (dropout, GELU) passes any layout through: attention scores keep their heads.
        per_element = type(self).couple is ChannelwiseHandler.couple and not layer_weights(call.layer)
        if per_element and len(inputs) == 1 and call.input_shapes[0] == call.output_shapes[0]:
            return [inputs[0]]
        return super().couple_layout(call, inputs, builder)

    def edit_config(self, config, kept_in, kept_out):
        if self.width_key is None:
            return config
        return {**config, self.width_key: int(len(kept_in[0]))}

    def channel_axes(self, call):
        channels = call.input_shapes[0][-1]
        return [
            ChannelAxis(weight_name(variable), "input", -1, np.arange(channels), "vector")
            for variable in layer_weights(call.layer)
            if len(variable.shape) >= 1 and variable.shape[-1] == channels
        ]


class NormalizationHandler(ChannelwiseHandler):
    """BatchNormalization and LayerNormalization over the channel axis alone: per-channel weights, like BatchNorm.

    LayerNormalization normalises each position over its channels, so removing channels changes the mean
    and variance the kept ones are normalised with: the pruned layer equals LayerNormalization of the kept
    channels, not the zeroed original (fine-tune after pruning). Channels of other groups (an MLP's hidden
    units after it) still prune exactly. Normalising any other axis is refused.
    """

    def couple(self, call, inputs, builder):
        rank = len(call.input_shapes[0])
        axes = call.layer.axis if isinstance(call.layer.axis, (list, tuple)) else [call.layer.axis]
        if sorted(int(axis) % rank for axis in axes) != [rank - 1]:
            raise UnsupportedLayerError(
                f"Layer {call.layer.name!r} ({type(call.layer).__name__}) normalises axis {call.layer.axis} of a "
                f"rank-{rank} tensor; segprune prunes normalisation layers over the last (channel) axis only. "
                "Use axis=-1 in a channels-last model, mark the layers around it with ignore=[...], or register a handler."
            )
        return [list(inputs[0])]


class GroupNormalizationHandler(ChannelwiseHandler):
    """GroupNormalization: channel-wise weights, and the kept count must stay divisible by its groups.

    Removing channels changes the statistics of the groups they were in, so unlike other layers the
    pruned model is not exactly the zeroed original: fine-tune after pruning.
    """

    def couple(self, call, inputs, builder):
        builder.require_multiple(inputs[0], call.layer.groups)
        return [list(inputs[0])]


class ActivationHandler(ChannelwiseHandler):
    """Activation: channel-wise, except a softmax over channels, which mixes them and is never pruned through."""

    def couple(self, call, inputs, builder):
        if _mixes_channels(call.layer.activation):
            for elements in inputs:
                builder.fix(elements)
        return [list(inputs[0])]


def _mixes_channels(activation) -> bool:
    return getattr(activation, "__name__", "") in ("softmax", "log_softmax")


class RescalingHandler(ChannelwiseHandler):
    """Rescaling: a per-channel scale or offset list in the config is sliced; a scalar is kept."""

    def edit_config(self, config, kept_in, kept_out):
        config = dict(config)
        for key in ("scale", "offset"):
            value = config.get(key)
            if isinstance(value, (list, tuple)) and len(value) > 1:
                config[key] = [value[i] for i in kept_in[0]]
        return config


class ReshapeHandler(ChannelHandler):
    """Reshape (the layer, or `keras.ops.reshape` in functional code) of three kinds:

    * the channel axis stays last and whole: tokens <-> image in transformers, (C,) -> (1, 1, C) in
      squeeze-excitation;
    * the channel axis is split into (heads, head size), as attention does: a head's channels are one class,
      so whole heads are pruned and every head keeps its size;
    * the last two axes (heads, head size) are merged back into channels.

    `shape_key` names the config entry holding the target shape ("target_shape" for the layer, batch
    excluded; "newshape" for the op, batch included).
    """

    def __init__(self, shape_key: str = "target_shape") -> None:
        self.shape_key = shape_key

    def couple_layout(self, call, inputs, builder):
        before, after, elements = call.input_shapes[0], call.output_shapes[0], inputs[0]
        kind = _reshape_kind(before, after, elements)
        if kind == "keep":
            return [on_last_axis(elements.ravel(), len(after))]
        if kind == "split":
            heads = elements.reshape(after[-2], after[-1])
            for head in heads:
                builder.union([int(e) for e in head[1:]], [int(head[0])] * (len(head) - 1))
            return [heads.reshape((1,) * (len(after) - 3) + heads.shape)]
        if kind == "merge":
            return [on_last_axis(elements.ravel(), len(after))]
        raise UnsupportedLayerError(
            f"Layer {call.layer.name!r} (Reshape) changes the channel axis {before} -> {after}; segprune can "
            "prune only reshapes that keep the last axis, split it into (heads, head size) or merge those back. "
            "Mark it with ignore=[...] or register a handler."
        )

    def edit_call_config(self, call, config, kept_in, kept_out):
        config = copy.deepcopy(config)
        shape = list(config[self.shape_key])
        before, after = call.input_shapes[0], call.output_shapes[0]
        if _reshape_kind(before, after, None) == "split":
            if shape[-2] != -1:
                shape[-2] = int(len(kept_in[0])) // int(after[-1])
        elif shape[-1] != -1:
            shape[-1] = int(len(kept_out[0]))
        config[self.shape_key] = shape
        return config


def _reshape_kind(before: tuple, after: tuple, elements: np.ndarray | None) -> str:
    channels_last = elements is None or is_last_axis(elements)
    if channels_last and before[-1] is not None and before[-1] == after[-1]:
        return "keep"
    if channels_last and len(after) >= 3 and None not in (before[-1], after[-2], after[-1]) and after[-2] * after[-1] == before[-1]:
        return "split"
    heads_last = elements is None or (elements.ndim >= 2 and all(size == 1 for size in elements.shape[:-2]))
    if heads_last and len(before) >= 3 and None not in (after[-1], before[-2], before[-1]) and before[-2] * before[-1] == after[-1]:
        return "merge"
    return "other"


class TransposeHandler(ChannelHandler):
    """`keras.ops.transpose`: the element array follows the axes (the batch axis must stay first)."""

    def couple_layout(self, call, inputs, builder):
        rank = len(call.input_shapes[0])
        axes = call.layer.axes
        permutation = list(range(rank))[::-1] if axes is None else [int(axis) % rank for axis in axes]
        if permutation[0] != 0:
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (Transpose) moves the batch axis ({permutation}); segprune cannot follow channels through it.")
        return [np.transpose(inputs[0], [axis - 1 for axis in permutation[1:]])]


class MatmulHandler(ChannelHandler):
    """`a @ b` on tensors of rank 3 or more (attention scores, attention-weighted values).

    Each output entry is made from a row of `a` and a column of `b`; every element among them, and so the
    output entry, is pruned together. In attention, heads sit on a batch axis of both operands: query and
    key heads (contracted), scores and value heads then become one class per head, whole heads go at once.
    """

    def couple_layout(self, call, inputs, builder):
        first, second = inputs
        if first.ndim < 2 or second.ndim < 2:
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (Matmul) multiplies tensors of rank below 3 {call.input_shapes}; segprune follows channels only through batched matmuls.")
        batch = np.broadcast_shapes(first.shape[:-2], second.shape[:-2])
        first = np.broadcast_to(first, (*batch, *first.shape[-2:]))
        second = np.broadcast_to(second, (*batch, *second.shape[-2:]))
        outputs = np.empty((*batch, first.shape[-2], second.shape[-1]), dtype=np.int64)
        for index in np.ndindex(*outputs.shape):
            *batch_index, row, column = index
            contributors = [int(e) for e in (*first[(*batch_index, row)].ravel(), *second[(*batch_index, slice(None), column)].ravel())]
            builder.union(contributors[1:], contributors[:1] * (len(contributors) - 1))
            outputs[index] = contributors[0]
        return [outputs]


class ReductionHandler(ChannelHandler):
    """`keras.ops.mean` / `max` / `min` / `sum`: over other axes (global pooling in squeeze-excitation) the
    channels pass; over the channel axis they are mixed and never pruned through."""

    def couple(self, call, inputs, builder):
        rank = len(call.input_shapes[0])
        axes = call.layer.axis
        axes = range(rank) if axes is None else (axes if isinstance(axes, (list, tuple)) else [axes])
        if rank - 1 in [int(axis) % rank for axis in axes]:
            outputs = builder.fresh(call.layer, call.output_shapes[0][-1] if call.output_shapes[0] else 0)
            builder.fix([*inputs[0], *outputs])
            return [outputs]
        return [list(inputs[0])]


def _einsum_letters(equation: str) -> tuple[list[str], str]:
    inputs, output = equation.replace(" ", "").split("->")
    return inputs.split(","), output


def _outer_axis_classes(builder: ChannelBuilder, elements: np.ndarray, axes: list[int]) -> None:
    """Makes the elements over several channel axes vary along the first of them only (one class per head)."""
    moved = np.moveaxis(elements, axes, list(range(len(axes)))).reshape(elements.shape[axes[0]], -1) if axes else None
    for row in [] if moved is None else moved:
        builder.union([int(e) for e in row[1:]], [int(row[0])] * (len(row) - 1))


class EinsumDenseHandler(ChannelHandler):
    """EinsumDense (MultiHeadAttention's projections): "abc,cde->abde" splits C input channels into (heads, head
    size), "abcd,cde->abe" merges them back. The equation's letters name the axes: kernel-only output letters
    are the produced channels, input letters summed away are the consumed ones. When channels span several
    letters, a class spans all but the first (heads go whole); the weights list that first letter's axis only."""

    def couple_layout(self, call, inputs, builder):
        (input_letters, kernel_letters), output_letters = _einsum_letters(call.layer.equation)
        elements, output_shape = inputs[0], call.output_shapes[0]
        for letter, size in zip(input_letters[1:], elements.shape):
            if letter in output_letters and size > 1:
                raise UnsupportedLayerError(f"Layer {call.layer.name!r} (EinsumDense {call.layer.equation}) carries channels through unchanged on axis {letter!r}; segprune cannot prune that.")
        new = [index for index, letter in enumerate(output_letters) if index and letter in kernel_letters and letter not in input_letters]
        sizes = [output_shape[index] for index in new]
        fresh = np.array(builder.fresh(call.layer, int(np.prod(sizes))), dtype=np.int64).reshape(sizes)
        _outer_axis_classes(builder, fresh, list(range(len(sizes))))
        if _mixes_channels(getattr(call.layer, "activation", None)):
            builder.fix([int(e) for e in fresh.ravel()])
        return [fresh.reshape([output_shape[index] if index in new else 1 for index in range(1, len(output_letters))])]

    def channel_axes(self, call):
        (input_letters, kernel_letters), output_letters = _einsum_letters(call.layer.equation)
        input_shape, output_shape = call.input_shapes[0], call.output_shapes[0]
        axes = []
        consumed = [index for index, letter in enumerate(input_letters) if index and letter in kernel_letters and letter not in output_letters]
        if consumed:
            inner = int(np.prod([input_shape[index] for index in consumed[1:]]))
            axis = kernel_letters.index(input_letters[consumed[0]])
            axes.append(ChannelAxis("kernel", "input", axis, np.arange(input_shape[consumed[0]]) * inner))
        produced = [index for index, letter in enumerate(output_letters) if index and letter in kernel_letters and letter not in input_letters]
        if produced:
            first = output_letters[produced[0]]
            inner = int(np.prod([output_shape[index] for index in produced[1:]]))
            positions = np.arange(output_shape[produced[0]]) * inner
            axes.append(ChannelAxis("kernel", "output", kernel_letters.index(first), positions))
            bias_axes = call.layer.bias_axes or ""
            if first in bias_axes and _weight_shape(call.layer, "bias") is not None:
                axes.append(ChannelAxis("bias", "output", bias_axes.index(first), positions, "vector"))
        return axes

    def edit_call_config(self, call, config, kept_in, kept_out):
        (input_letters, kernel_letters), output_letters = _einsum_letters(call.layer.equation)
        output_shape = call.output_shapes[0]
        produced = [index for index, letter in enumerate(output_letters) if index and letter in kernel_letters and letter not in input_letters]
        if not produced:
            return config
        inner = int(np.prod([output_shape[index] for index in produced[1:]]))
        shape = list(config["output_shape"]) if isinstance(config["output_shape"], (list, tuple)) else [config["output_shape"]]
        shape[produced[0] - 1] = int(len(kept_out[0])) // inner
        return {**config, "output_shape": shape}


class DotProductAttentionHandler(ChannelHandler):
    """`keras.ops.dot_product_attention` on (batch, tokens, heads, head size): a head of the query, key and value
    and of the output is one class, so heads go whole."""

    def couple_layout(self, call, inputs, builder):
        query, key, value = inputs[:3]
        if len(inputs) > 3 or min(query.ndim, key.ndim, value.ndim) != 3:
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (DotProductAttention) with a bias or mask tensor, or not on (batch, tokens, heads, head size); segprune cannot prune it.")
        heads = max(query.shape[-2], key.shape[-2], value.shape[-2])
        for head in range(heads):
            members = [int(e) for array in (query, key, value) for e in array[:, min(head, array.shape[-2] - 1), :].ravel()]
            builder.union(members[1:], members[:1] * (len(members) - 1))
        return [value]


class EinsumOperationHandler(ChannelHandler):
    """`keras.ops.einsum` between tensors (attention scores from queries and keys, scores times values): each
    output entry is made from every operand entry with the same letters, all pruned together, like `@`."""

    def couple_layout(self, call, inputs, builder):
        operand_letters, output_letters = _einsum_letters(call.layer.subscripts)
        if "." in call.layer.subscripts or any(len(letters) != array.ndim + 1 for letters, array in zip(operand_letters, inputs)):
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (Einsum {call.layer.subscripts}): segprune follows channels through einsums over whole tensors with a leading batch letter only.")
        sizes = {}
        for letters, array in zip(operand_letters, inputs):
            for letter, size in zip(letters[1:], array.shape):
                sizes[letter] = max(sizes.get(letter, 1), size)
        outputs = np.empty([sizes.get(letter, 1) for letter in output_letters[1:]], dtype=np.int64)
        for index in np.ndindex(*outputs.shape):
            position = dict(zip(output_letters[1:], index))
            members = []
            for letters, array in zip(operand_letters, inputs):
                selector = tuple(
                    (min(position[letter], size - 1) if letter in position else slice(None)) for letter, size in zip(letters[1:], array.shape)
                )
                members += [int(e) for e in np.asarray(array[selector]).ravel()]
            builder.union(members[1:], members[:1] * (len(members) - 1))
            outputs[index] = members[0]
        return [outputs]


class SoftmaxOperationHandler(ChannelHandler):
    """`keras.ops.softmax`: normalising over channels mixes them (never pruned through); over tokens, as
    attention scores do, the channels (heads) pass."""

    def couple_layout(self, call, inputs, builder):
        elements, rank = inputs[0], len(call.input_shapes[0])
        axes = call.layer.axis if isinstance(call.layer.axis, (list, tuple)) else [call.layer.axis]
        if any(elements.shape[int(axis) % rank - 1] > 1 for axis in axes):
            builder.fix([int(e) for e in elements.ravel()])
        return [elements]


class FlattenHandler(ChannelwiseHandler):
    """Flatten of channels-last features: output feature p*C + c is channel c at position p.

    So every output feature carries its channel's class, and a Dense layer after it loses the rows of
    every position of a removed channel (VGG's classifier). The spatial size must be known.
    """

    def couple(self, call, inputs, builder):
        spatial = call.input_shapes[0][1:-1]
        if any(size is None for size in spatial):
            raise UnsupportedLayerError(
                f"Layer {call.layer.name!r} (Flatten) flattens a tensor of unknown spatial size {call.input_shapes[0]}; "
                "segprune can prune through Flatten only at a fixed input size. Build the model with a fixed "
                "input shape or mark the layers before it with ignore=[...]."
            )
        positions = int(np.prod(spatial)) if spatial else 1
        return [list(inputs[0]) * positions]


class MergeHandler(ChannelHandler):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: the inputs' channels are one and the same.

    An input with a single channel broadcasts (a spatial attention map) and is not coupled.
    """

    def couple(self, call, inputs, builder):
        widths = [len(elements) for elements in inputs]  # scalars in `x * 0.5` are not tensors: not listed
        full = max(widths)
        coupled = [elements for elements in inputs if len(elements) == full]
        if any(width not in (1, full) for width in widths):
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} merges tensors of {widths} channels; expected equal widths.")
        for other in coupled[1:]:
            builder.union(coupled[0], other)
        for elements in inputs:
            if len(elements) == 1 and full > 1:
                builder.fix(elements)
        return [list(coupled[0])]

    def couple_layout(self, call, inputs, builder):
        if all(is_last_axis(elements) for elements in inputs):
            return super().couple_layout(call, inputs, builder)
        if len(inputs) == 1:  # attention scores times a scalar
            return [inputs[0]]
        if any(elements.shape != inputs[0].shape for elements in inputs):
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} merges tensors whose channels span different axes {[e.shape for e in inputs]}.")
        for other in inputs[1:]:
            builder.union([int(e) for e in inputs[0].ravel()], [int(e) for e in other.ravel()])
        return [inputs[0]]


class ConcatenateHandler(ChannelHandler):
    """Concatenate on the channel axis: each input owns a slice of the output; on another axis, a merge."""

    def couple(self, call, inputs, builder):
        rank = len(call.output_shapes[0])
        if call.layer.axis in (-1, rank - 1):
            return [[element for elements in inputs for element in elements]]
        return MergeHandler().couple(call, inputs, builder)


class FixedHandler(ChannelwiseHandler):
    """Layers that mix channels without weights per channel (Softmax over channels): never pruned through."""

    def couple(self, call, inputs, builder):
        for elements in inputs:
            builder.fix(elements)
        return [list(inputs[0])]


class InputHandler(ChannelHandler):
    def couple(self, call, inputs, builder):
        return [list(inputs[0])] if inputs else []


_CHANNELWISE = (
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.UpSampling2D,
    keras.layers.Resizing,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.Identity,
    keras.layers.Normalization,
)
MERGE_LAYERS = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)

_REGISTRY: dict[type, ChannelHandler] = {}


def register_handler(layer_class: type, handler: ChannelHandler) -> None:
    """Tells segprune how a layer class couples and slices channels.

    Example:
        >>> register_handler(MyChannelwiseActivation, ChannelwiseHandler())
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.Operation)):
        raise TypeError(f"register_handler needs a keras layer (or operation) class, got {layer_class!r}.")
    _REGISTRY[layer_class] = handler


_TRACED: set[type] = set()


def register_traced(layer_class: type) -> None:
    """Tells segprune to trace a layer class's `call` into the graph, as the standard layers and `keras.ops`
    it runs at inference, instead of handling the layer as one unit.

    Layers made only of sublayers are traced anyway; this is for a layer without weights of its own whose
    call is written in `keras.ops` (stochastic depth, which is the identity at inference, vanishes).

    Example:
        >>> register_traced(MyDropPath)
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(f"register_traced needs a keras layer class, got {layer_class!r}.")
    _TRACED.add(layer_class)


def is_traced(layer: keras.layers.Layer) -> bool:
    """Whether this layer's class was registered with `register_traced`."""
    return type(layer) in _TRACED


def register_known_layers() -> None:
    """Registers the third-party layers segprune knows (keras-hub's stochastic depth), once their package is imported."""
    for layer_class in keras_hub_identity_layers():
        _TRACED.add(layer_class)


def has_handler(layer: keras.layers.Layer) -> bool:
    """Whether a handler is registered for exactly this layer's class."""
    return type(layer) in _REGISTRY


def handler_for(layer: keras.layers.Layer) -> ChannelHandler:
    """The handler registered for exactly this layer's class (subclasses are not assumed to behave alike)."""
    handler = _REGISTRY.get(type(layer))
    if handler is None:
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} of class {type(layer).__module__}.{type(layer).__name__} has no channel "
            "handler, so segprune cannot tell how it couples channels. Pass ignore=[...] with the layers that "
            "feed it, or register one: segprune.graph.register_handler(YourLayer, ChannelwiseHandler()) for a "
            "per-channel layer (see segprune/graph/channels.py for the other handler kinds)."
        )
    return handler


for _class in _CHANNELWISE:
    register_handler(_class, ChannelwiseHandler())
for _class in MERGE_LAYERS:
    register_handler(_class, MergeHandler())
register_handler(keras.layers.Conv2D, ConvHandler())
register_handler(keras.layers.Conv1D, ConvHandler())
register_handler(keras.layers.Dense, DenseLikeHandler("units"))
register_handler(keras.layers.Conv2DTranspose, TransposeConvHandler())
register_handler(keras.layers.DepthwiseConv2D, DepthwiseHandler())
register_handler(keras.layers.SeparableConv2D, SeparableHandler())
register_handler(keras.layers.Concatenate, ConcatenateHandler())
register_handler(concatenate_operation(), ConcatenateHandler())
register_handler(keras.layers.Rescaling, RescalingHandler())
register_handler(keras.layers.Reshape, ReshapeHandler("target_shape"))
register_handler(keras.layers.Flatten, FlattenHandler())
register_handler(keras.layers.Softmax, SoftmaxOperationHandler())
register_handler(keras.layers.Activation, ActivationHandler())
register_handler(keras.layers.GroupNormalization, GroupNormalizationHandler())
register_handler(keras.layers.BatchNormalization, NormalizationHandler())
register_handler(keras.layers.LayerNormalization, NormalizationHandler())
register_handler(keras.layers.InputLayer, InputHandler())
_BINARY_OPERATIONS, _UNARY_OPERATIONS = elementwise_operations()
for _class in _BINARY_OPERATIONS:
    register_handler(_class, MergeHandler())
for _class in _UNARY_OPERATIONS:
    register_handler(_class, ChannelwiseHandler())
_LAYER_SCALE, _STOCHASTIC_DEPTH = application_channelwise_layers()
register_handler(_LAYER_SCALE, ChannelwiseHandler(width_key="projection_dim"))
register_handler(_STOCHASTIC_DEPTH, ChannelwiseHandler())
_RESHAPE, _TRANSPOSE, _MATMUL, _SOFTMAX = attention_operations()
register_handler(_RESHAPE, ReshapeHandler("newshape"))
register_handler(_TRANSPOSE, TransposeHandler())
register_handler(_MATMUL, MatmulHandler())
register_handler(_SOFTMAX, SoftmaxOperationHandler())
for _class in reduction_operations():
    register_handler(_class, ReductionHandler())
register_handler(keras.layers.EinsumDense, EinsumDenseHandler())
_DOT_PRODUCT_ATTENTION, _EINSUM = fused_attention_operations()
register_handler(_DOT_PRODUCT_ATTENTION, DotProductAttentionHandler())
register_handler(_EINSUM, EinsumOperationHandler())
