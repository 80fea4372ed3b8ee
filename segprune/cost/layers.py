"""Multiply-accumulates (MACs) and parameters per layer, for a given input size."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from segprune.backend._keras_internals import LayerCall, is_graph_model, trace_layer_calls
from segprune.graph.groups import plain_graph
from segprune.graph.handlers import UnsupportedLayerError
from segprune.graph.registry import pricing_handler


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer call.

    Attributes:
        name: The layer's name, prefixed by nested model names (`encoder/block_1_expand`).
        class_name: The layer class.
        output_shape: Its output shape (batch 1).
        macs: Multiply-accumulates of layers that multiply weights with inputs (convolutions, dense and
            EinsumDense layers) and of attention's products of two tensors (queries times keys, scores times
            values: `@`, `keras.ops.einsum`, `keras.ops.dot_product_attention`); 0 for other layers (the softmax
            between them included). Each layer's handler prices it.
        other_ops: Element-wise work counted apart from MACs: normalisation (BatchNorm 2 per element, LayerNorm
            4), pooling (window size per output), merges (one per output element per extra input).
        params: Parameters of the layer (counted at its first call only).
    """

    name: str
    class_name: str
    output_shape: tuple[int | None, ...]
    macs: int
    other_ops: int
    params: int


@dataclass(frozen=True)
class CostReport:
    """Per-layer and total cost of a model at one input shape (batch 1)."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerCost, ...]

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def other_ops(self) -> int:
        return sum(layer.other_ops for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "macs": self.macs,
            "other_ops": self.other_ops,
            "params": self.params,
            "layers": [layer.__dict__ | {"output_shape": list(layer.output_shape)} for layer in self.layers],
        }


def flops(model: keras.Model, input_shape: tuple[int, ...]) -> CostReport:
    """Counts multiply-accumulates and parameters of every layer for one input of `input_shape`.

    Layers of nested models (a `keras.applications` encoder) are counted one by one. A transposed
    convolution costs H_in * W_in * k_h * k_w * C_in * C_out: each input pixel is scattered once. Attention
    costs its projections and, per head, queries x keys x key size for the scores and queries x keys x value
    size for the weighted values (`@`, `keras.ops.einsum`, `dot_product_attention`, MultiHeadAttention's).

    Args:
        model: A functional or Sequential model.
        input_shape: (height, width) or (height, width, channels), without the batch dimension.

    Returns:
        A `CostReport`; `.macs` and `.params` are the totals.

    Example:
        >>> report = flops(segprune.models.unet(), (128, 128))
        >>> report.macs > 0
        True
    """
    if not is_graph_model(model):
        raise ValueError(
            f"flops() needs a functional or Sequential model; {type(model).__name__} is subclassed."
        )
    expected = tuple(model.inputs[0].shape[1:])
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == len(expected) - 1:
        shape = (*shape, int(expected[-1]))
    if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
        raise ValueError(f"input_shape {tuple(input_shape)} does not fit the model's input {expected}.")
    try:  # composite layers (keras-hub attention, SPP) priced by the layers they run
        model = plain_graph(model)
    except UnsupportedLayerError:  # a custom layer segprune cannot see into: priced by what it can see
        pass
    calls = trace_layer_calls(model, (1, *shape))
    counted: set[int] = set()
    layers = []
    for call in calls:
        first_call = id(call.layer) not in counted
        counted.add(id(call.layer))
        layers.append(
            LayerCost(
                name=call.qualified_name,
                class_name=type(call.layer).__name__,
                output_shape=call.output_shapes[0] if call.output_shapes else (),
                macs=layer_macs(call),
                other_ops=layer_other_ops(call),
                params=pricing_handler(call.layer).params(call.layer) if first_call else 0,
            )
        )
    return CostReport(input_shape=shape, layers=tuple(layers))


def layer_macs(call: LayerCall) -> int:
    """MACs of one call, as the layer's handler prices it (0 for layers that multiply no weights).

    Widths are read from the call's shapes, not the layer's config, so a call whose shapes describe a
    pruned width gives the pruned cost.
    """
    return pricing_handler(call.layer).macs(call)


def layer_other_ops(call: LayerCall) -> int:
    """Element-wise work of one call (normalisation, pooling, merges), as the layer's handler prices it."""
    return pricing_handler(call.layer).other_ops(call)
