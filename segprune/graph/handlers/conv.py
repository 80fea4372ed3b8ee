"""Layers that mix channels through a kernel: Dense, Conv1D/2D (grouped too), Conv2DTranspose, depthwise and separable."""

from __future__ import annotations

import math

import keras
import numpy as np

from segprune.graph.handlers.base import ChannelAxis, ChannelHandler, kernel_value, mixes_channels, weight_shape


def _spatial_sum(kernel: np.ndarray, input_axis: int, output_axis: int) -> np.ndarray:
    """A kernel summed over every axis but its input and output channel axes: (inputs, outputs)."""
    moved = np.moveaxis(kernel, (input_axis, output_axis), (-2, -1))
    return moved.reshape(-1, *moved.shape[-2:]).sum(axis=0)


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
        if mixes_channels(getattr(layer, "activation", None)):
            builder.fix(outputs)
        return [outputs]

    def edit_config(self, config, kept_in, kept_out):
        config = dict(config)
        config[self.width_key] = int(len(kept_out[0]))
        return config

    def channel_axes(self, call):
        shape = weight_shape(call.layer, "kernel")
        axes = [
            ChannelAxis("kernel", "input", self.input_axis, np.arange(shape[self.input_axis])),
            ChannelAxis("kernel", "output", self.output_axis, np.arange(shape[self.output_axis])),
        ]
        return axes + _bias_axis(call.layer, shape[self.output_axis])

    def mean_response(self, call):
        return _spatial_sum(kernel_value(call.layer, "kernel"), self.input_axis, self.output_axis)

    def macs(self, call):
        if not call.input_shapes or not call.output_shapes:
            return 0
        return math.prod(call.input_shapes[0][1:]) * call.output_shapes[0][-1]

    def sparse_kernels(self, layer):
        return [("kernel", self.input_axis)]

    def latency_kind(self, layer):
        return "dense"


def _bias_axis(layer: keras.layers.Layer, outputs: int) -> list[ChannelAxis]:
    if weight_shape(layer, "bias") is None:
        return []
    return [ChannelAxis("bias", "output", -1, np.arange(outputs), "vector")]


def _spatial(shape: tuple[int | None, ...]) -> int:
    return math.prod(shape[1:-1])


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
        if mixes_channels(getattr(layer, "activation", None)):
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
        shape = weight_shape(call.layer, "kernel")
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

    def macs(self, call):
        if not call.input_shapes or not call.output_shapes:
            return 0
        layer, input_shape, output_shape = call.layer, call.input_shapes[0], call.output_shapes[0]
        # A depthwise conv written as a grouped one (one input channel per group) is pruned by removing whole
        # groups, so each output still reads one input channel, whatever the narrowed shapes say.
        per_group_inputs = 1 if layer.groups > 1 and layer.kernel.shape[-2] == 1 else input_shape[-1] // layer.groups
        return _spatial(output_shape) * output_shape[-1] * math.prod(layer.kernel_size) * per_group_inputs

    def latency_kind(self, layer):
        return "conv" if len(layer.kernel_size) == 2 else None


class TransposeConvHandler(DenseLikeHandler):
    """Conv2DTranspose: kernel (kh, kw, out, in), bias (out,)."""

    def __init__(self) -> None:
        super().__init__("filters", input_axis=-1, output_axis=-2)

    def mean_response(self, call):
        return super().mean_response(call) / np.prod(call.layer.strides)  # each output pixel gets 1/stride^2 of the taps

    def macs(self, call):
        """Each input pixel is scattered once: H_in * W_in * k_h * k_w * C_in * C_out."""
        if not call.input_shapes or not call.output_shapes:
            return 0
        input_shape = call.input_shapes[0]
        return _spatial(input_shape) * math.prod(call.layer.kernel_size) * input_shape[-1] * call.output_shapes[0][-1]

    def latency_kind(self, layer):
        return "transpose"


class DepthwiseHandler(ChannelHandler):
    """DepthwiseConv2D: output channel c*m+k comes from input channel c alone, so they are pruned together."""

    def couple(self, call, inputs, builder):
        multiplier = call.layer.depth_multiplier
        return [[element for element in inputs[0] for _ in range(multiplier)]]

    def channel_axes(self, call):
        shape = weight_shape(call.layer, "kernel")
        return [ChannelAxis("kernel", "input", 2, np.arange(shape[2]))] + _bias_axis(call.layer, shape[2] * shape[3])

    def mean_response(self, call):
        taps = kernel_value(call.layer, "kernel").sum(axis=(0, 1))  # (channels, multiplier)
        channels, multiplier = taps.shape
        response = np.zeros((channels, channels * multiplier), dtype=taps.dtype)
        for channel in range(channels):
            response[channel, channel * multiplier : (channel + 1) * multiplier] = taps[channel]
        return response

    def macs(self, call):
        if not call.output_shapes:
            return 0
        output_shape = call.output_shapes[0]
        return _spatial(output_shape) * output_shape[-1] * math.prod(call.layer.kernel_size)

    def sparse_kernels(self, layer):
        return [("kernel", None)]

    def latency_kind(self, layer):
        return "depthwise"


class SeparableHandler(DenseLikeHandler):
    """SeparableConv2D: depthwise (kh, kw, in, m), pointwise (1, 1, in*m, out), bias (out,)."""

    def __init__(self) -> None:
        super().__init__("filters")

    def channel_axes(self, call):
        depthwise = weight_shape(call.layer, "depthwise_kernel")
        pointwise = weight_shape(call.layer, "pointwise_kernel")
        channels, multiplier = depthwise[2], depthwise[3]
        return [
            ChannelAxis("depthwise_kernel", "input", 2, np.arange(channels)),
            ChannelAxis("pointwise_kernel", "input", 2, np.repeat(np.arange(channels), multiplier)),
            ChannelAxis("pointwise_kernel", "output", 3, np.arange(pointwise[3])),
            *_bias_axis(call.layer, pointwise[3]),
        ]

    def mean_response(self, call):
        depthwise = kernel_value(call.layer, "depthwise_kernel").sum(axis=(0, 1))  # (in, m)
        pointwise = kernel_value(call.layer, "pointwise_kernel")[0, 0]  # (in*m, out)
        channels, multiplier = depthwise.shape
        return np.einsum("ck,cko->co", depthwise, pointwise.reshape(channels, multiplier, -1))

    def macs(self, call):
        if not call.input_shapes or not call.output_shapes:
            return 0
        middle = _spatial(call.output_shapes[0]) * call.input_shapes[0][-1] * call.layer.depth_multiplier
        return middle * math.prod(call.layer.kernel_size) + middle * call.output_shapes[0][-1]

    def sparse_kernels(self, layer):
        return [("depthwise_kernel", None), ("pointwise_kernel", -2)]

    def latency_kind(self, layer):
        return "separable"
