"""Layers that join tensors: element-wise merges (their inputs' channels are one) and concatenation."""

from __future__ import annotations

import math

from segprune.graph.handlers.base import ChannelHandler, UnsupportedLayerError, is_last_axis


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

    def other_ops(self, call):
        """One operation per output element for each input beyond the first."""
        return math.prod(call.output_shapes[0][1:]) * (len(call.input_shapes) - 1) if call.output_shapes else 0


class ConcatenateHandler(ChannelHandler):
    """Concatenate on the channel axis: each input owns a slice of the output; on another axis, a merge."""

    def couple(self, call, inputs, builder):
        rank = len(call.output_shapes[0])
        if call.layer.axis in (-1, rank - 1):
            return [[element for elements in inputs for element in elements]]
        return MergeHandler().couple(call, inputs, builder)
