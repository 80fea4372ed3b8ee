"""Layers that keep each channel apart: activations, normalisation, pooling, resizing, Flatten; and the
inputs and layers whose channels are never pruned through."""

from __future__ import annotations

import math

import numpy as np

from segprune.graph.handlers.base import (
    ChannelAxis,
    ChannelHandler,
    UnsupportedLayerError,
    layer_weights,
    mixes_channels,
    on_last_axis,
    weight_name,
)


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

    `ops_per_element` is the element-wise work it is priced at: 2 for BatchNorm (a scale and a shift; the
    statistics fold in at inference), 4 for LayerNorm (mean, variance, normalise, scale-and-shift).
    """

    def __init__(self, ops_per_element: int) -> None:
        super().__init__()
        self.ops_per_element = ops_per_element

    def other_ops(self, call):
        return self.ops_per_element * math.prod(call.output_shapes[0][1:]) if call.output_shapes else 0

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


class PoolingHandler(ChannelwiseHandler):
    """MaxPooling2D and AveragePooling2D: priced at one operation per window entry of every output."""

    def other_ops(self, call):
        return math.prod(call.output_shapes[0][1:]) * math.prod(call.layer.pool_size) if call.output_shapes else 0


class GlobalPoolingHandler(ChannelwiseHandler):
    """GlobalAveragePooling2D and GlobalMaxPooling2D: priced at one operation per input element."""

    def other_ops(self, call):
        return math.prod(call.input_shapes[0][1:]) if call.input_shapes else 0


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
        if mixes_channels(call.layer.activation):
            for elements in inputs:
                builder.fix(elements)
        return [list(inputs[0])]


class RescalingHandler(ChannelwiseHandler):
    """Rescaling: a per-channel scale or offset list in the config is sliced; a scalar is kept."""

    def edit_config(self, config, kept_in, kept_out):
        config = dict(config)
        for key in ("scale", "offset"):
            value = config.get(key)
            if isinstance(value, (list, tuple)) and len(value) > 1:
                config[key] = [value[i] for i in kept_in[0]]
        return config


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


class FixedHandler(ChannelwiseHandler):
    """Layers that mix channels without weights per channel (Softmax over channels): never pruned through."""

    def couple(self, call, inputs, builder):
        for elements in inputs:
            builder.fix(elements)
        return [list(inputs[0])]


class PinnedHandler(ChannelHandler):
    """A layer segprune keeps whole (pins): no handler is registered for its class, or its handler cannot express
    how it couples channels (a reshape across the channel axis, a normalisation over the whole map).

    Every channel it reads is fixed, so its producers keep them all; every tensor it writes gets new fixed
    channels, so its consumers keep them all; it lists no channel axes, so the surgery leaves its config and
    weights as they are. That is exact whatever the layer computes, provided no prunable layer shares its
    variables (the graph checks that). An output whose last size is unknown gets one fixed element standing
    for all its channels; the graph pins every layer that reads it.
    """

    def couple_layout(self, call, inputs, builder):
        for elements in inputs:
            builder.fix([int(e) for e in elements.ravel()])
        outputs = []
        for shape in call.output_shapes:
            # A scalar (per sample) broadcasts as one channel; an unknown count is one placeholder element.
            count = int(shape[-1]) if len(shape) >= 2 and shape[-1] is not None else 1
            elements = builder.new(count, call.layer.name)
            builder.fix(elements)
            outputs.append(on_last_axis(elements, len(shape)))
        return outputs


class GetItemHandler(ChannelHandler):
    """Indexing a tensor (`x[:, None, None, :]` in squeeze-excitation, `x[0]`, `x[..., ::-1]`): where the key
    takes the channel axis whole (a full slice, reversed or not, or nothing), the channels stay last and pass
    through, and the same key indexes the pruned tensor. Any other key on the channel axis (one channel, a
    range, new axes after it) is not expressed: the graph pins the call."""

    def couple(self, call, inputs, builder):
        step = _channel_step(call.constants[0], len(call.input_shapes[0])) if call.constants else None  # none: a tensor in the key
        if step is None:
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (GetItem) indexes the channel axis with key {call.constants}")
        return [list(inputs[0])[::step]]


def _channel_step(key, rank: int) -> int | None:
    """1 (or -1) where `key` takes the last of `rank` axes whole (or reversed) and leaves it last; else None."""
    key = list(key) if isinstance(key, (tuple, list)) else [key]
    if any(not (entry is None or entry is Ellipsis or isinstance(entry, (int, slice))) for entry in key):
        return None  # tensors or arrays as indices
    if key and key[-1] is Ellipsis:
        return 1
    indexing = [entry for entry in key if entry is not None]
    if Ellipsis not in key and len(indexing) < rank:  # the channel axis is left to an implicit `...` after the key
        return 1
    last = key[-1]  # the channel axis's entry (a new axis after it would leave the channels off the last axis)
    if isinstance(last, slice) and last.start is None and last.stop is None and last.step in (None, 1, -1):
        return last.step or 1
    return None


class RepeatHandler(ChannelHandler):
    """`ops.repeat`: along another axis the channels pass through. Along the channel axis of a one-channel tensor
    (an attention gate spread over the skip it multiplies: `repeat(psi, channels, axis=3)`) every output channel is
    a copy of that one, so any of them may go and `repeats` follows the kept count. Repeating several channels
    along the channel axis is not expressed: the graph pins the call."""

    def couple(self, call, inputs, builder):
        rank, axis, repeats = len(call.input_shapes[0]), call.layer.axis, call.layer.repeats
        if axis is not None and axis % rank != rank - 1:
            return [list(inputs[0])]
        if axis is None or len(inputs[0]) != 1 or not isinstance(repeats, int):
            raise UnsupportedLayerError(
                f"Layer {call.layer.name!r} (Repeat) repeats {len(inputs[0])} channels {repeats} times along the channel axis (axis={axis})"
            )
        return [builder.fresh(call.layer, repeats)]

    def edit_call_config(self, call, config, kept_in, kept_out):
        if call.input_shapes[0][-1] == call.output_shapes[0][-1]:  # repeated along another axis
            return config
        return {**config, "repeats": int(len(kept_out[0]))}


class InputHandler(ChannelHandler):
    def couple(self, call, inputs, builder):
        return [list(inputs[0])] if inputs else []
