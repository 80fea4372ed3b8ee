"""How each layer kind couples and slices channels: one handler per layer class, in a public registry.

A handler answers two questions for its layer kind:

* `couple`: given the channel *elements* of each input tensor (one int per channel position), which
  elements make up each output tensor? A producer (Conv2D, Dense...) creates fresh elements; a
  channel-wise layer (BatchNorm, ReLU, pooling...) passes its input's through; an element-wise merge
  declares its inputs' elements equal. Equal elements are pruned together.
* `slice`: given the kept input and output positions, what are the smaller layer's config and weights?

A layer class with no handler is an error, never a guess: register one with `register_handler`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol

import keras
import numpy as np

from segprune.backend._keras_internals import LayerCall, elementwise_operations


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


class ChannelHandler:
    """Base handler: subclasses override `couple`, and `slice_weights`/`edit_config` where weights exist."""

    def couple(self, call: LayerCall, inputs: list[list[int]], builder: ChannelBuilder) -> list[list[int]]:
        raise NotImplementedError

    def edit_config(self, config: dict, kept_in: list[np.ndarray], kept_out: list[np.ndarray]) -> dict:
        return config

    def slice_weights(self, call: LayerCall, kept_in: list[np.ndarray], kept_out: list[np.ndarray]) -> list[np.ndarray]:
        return [keras.ops.convert_to_numpy(w) for w in layer_weights(call.layer)]


def layer_weights(operation) -> list:
    """The variables of a layer; none for a bare operation (`x + y` in functional code)."""
    return list(getattr(operation, "weights", []))


def weight_name(variable) -> str:
    """A variable's own name within its layer: "kernel", "bias", "gamma", ..."""
    return variable.path.rsplit("/", 1)[-1]


def _weights_by_name(layer: keras.layers.Layer) -> list[tuple[str, np.ndarray]]:
    return [(weight_name(w), keras.ops.convert_to_numpy(w)) for w in layer_weights(layer)]


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
        if getattr(layer, "groups", 1) != 1:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({type(layer).__name__}) is a grouped convolution (groups={layer.groups}); "
                "segprune does not prune those yet. Mark it with ignore=[...] or register a handler."
            )
        outputs = builder.fresh(layer, call.output_shapes[0][-1])
        if _mixes_channels(getattr(layer, "activation", None)):
            builder.fix(outputs)
        return [outputs]

    def edit_config(self, config, kept_in, kept_out):
        config = dict(config)
        config[self.width_key] = int(len(kept_out[0]))
        return config

    def slice_weights(self, call, kept_in, kept_out):
        sliced = []
        for name, value in _weights_by_name(call.layer):
            if name == "kernel":
                value = np.take(np.take(value, kept_in[0], axis=self.input_axis), kept_out[0], axis=self.output_axis)
            elif name == "bias":
                value = value[kept_out[0]]
            sliced.append(value)
        return sliced


class TransposeConvHandler(DenseLikeHandler):
    """Conv2DTranspose: kernel (kh, kw, out, in), bias (out,)."""

    def __init__(self) -> None:
        super().__init__("filters", input_axis=-1, output_axis=-2)


class DepthwiseHandler(ChannelHandler):
    """DepthwiseConv2D: output channel c*m+k comes from input channel c alone, so they are pruned together."""

    def couple(self, call, inputs, builder):
        multiplier = call.layer.depth_multiplier
        return [[element for element in inputs[0] for _ in range(multiplier)]]

    def slice_weights(self, call, kept_in, kept_out):
        sliced = []
        for name, value in _weights_by_name(call.layer):
            if name == "kernel":
                value = np.take(value, kept_in[0], axis=2)
            elif name == "bias":
                value = value[kept_out[0]]
            sliced.append(value)
        return sliced


class SeparableHandler(DenseLikeHandler):
    """SeparableConv2D: depthwise (kh, kw, in, m), pointwise (1, 1, in*m, out), bias (out,)."""

    def __init__(self) -> None:
        super().__init__("filters")

    def slice_weights(self, call, kept_in, kept_out):
        multiplier = call.layer.depth_multiplier
        expanded = (kept_in[0][:, None] * multiplier + np.arange(multiplier)[None, :]).ravel()
        sliced = []
        for name, value in _weights_by_name(call.layer):
            if name == "depthwise_kernel":
                value = np.take(value, kept_in[0], axis=2)
            elif name == "pointwise_kernel":
                value = np.take(np.take(value, expanded, axis=2), kept_out[0], axis=3)
            elif name == "bias":
                value = value[kept_out[0]]
            sliced.append(value)
        return sliced


class ChannelwiseHandler(ChannelHandler):
    """Layers that act on each channel separately: outputs keep their input's channels.

    Weights whose last axis has one entry per channel (BatchNorm's gamma/beta/statistics, PReLU's alpha,
    Normalization's mean/variance) are sliced on it; other weights are kept.
    """

    def couple(self, call, inputs, builder):
        return [list(inputs[0])]

    def slice_weights(self, call, kept_in, kept_out):
        channels = call.input_shapes[0][-1]
        sliced = []
        for variable in layer_weights(call.layer):
            value = keras.ops.convert_to_numpy(variable)
            if value.ndim >= 1 and value.shape[-1] == channels:
                value = np.take(value, kept_in[0], axis=-1)
            sliced.append(value)
        return sliced


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


class ReshapeHandler(ChannelwiseHandler):
    """Reshape that keeps the channel axis last and unchanged, like (C,) -> (1, 1, C) in squeeze-excitation."""

    def couple(self, call, inputs, builder):
        before, after = call.input_shapes[0], call.output_shapes[0]
        if before[-1] != after[-1] or before[-1] is None:
            raise UnsupportedLayerError(
                f"Layer {call.layer.name!r} (Reshape) changes the channel axis {before} -> {after}; segprune can "
                "prune only reshapes that keep the last axis. Mark it with ignore=[...] or register a handler."
            )
        return [list(inputs[0])]

    def edit_config(self, config, kept_in, kept_out):
        config = copy.deepcopy(config)
        config["target_shape"] = [*config["target_shape"][:-1], int(len(kept_out[0]))]
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
    keras.layers.BatchNormalization,
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
register_handler(keras.layers.Conv2D, DenseLikeHandler("filters"))
register_handler(keras.layers.Conv1D, DenseLikeHandler("filters"))
register_handler(keras.layers.Dense, DenseLikeHandler("units"))
register_handler(keras.layers.Conv2DTranspose, TransposeConvHandler())
register_handler(keras.layers.DepthwiseConv2D, DepthwiseHandler())
register_handler(keras.layers.SeparableConv2D, SeparableHandler())
register_handler(keras.layers.Concatenate, ConcatenateHandler())
register_handler(keras.layers.Rescaling, RescalingHandler())
register_handler(keras.layers.Reshape, ReshapeHandler())
register_handler(keras.layers.Flatten, FlattenHandler())
register_handler(keras.layers.Softmax, FixedHandler())
register_handler(keras.layers.Activation, ActivationHandler())
register_handler(keras.layers.GroupNormalization, GroupNormalizationHandler())
register_handler(keras.layers.InputLayer, InputHandler())
_BINARY_OPERATIONS, _UNARY_OPERATIONS = elementwise_operations()
for _class in _BINARY_OPERATIONS:
    register_handler(_class, MergeHandler())
for _class in _UNARY_OPERATIONS:
    register_handler(_class, ChannelwiseHandler())
