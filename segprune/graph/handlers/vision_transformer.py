"""Vision transformers' token embeddings (keras-hub's ViT and DINOv2): an image cut into patches, each projected by
a strided convolution, with class, register and position tokens added.

The embedding width is the residual stream of every block after it, normalised by LayerNormalization over its
channels. Removing stream channels changes the mean and variance every LayerNorm computes, so no smaller model
equals the original with those channels zeroed: the embedding's channels are kept whole (fixed), and the heads
and MLP hidden units inside each block, which sit between a producer and a consumer, prune exactly.
"""

from __future__ import annotations

import math

import keras

from segprune.backend._keras_internals import all_sublayers
from segprune.graph.handlers.base import ChannelHandler, UnsupportedLayerError, on_last_axis


class PatchEmbeddingHandler(ChannelHandler):
    """A layer that turns an image into tokens of a fixed width (ViT's `ViTPatchingAndEmbedding`, DINOv2's
    `DINOV2Embedding`): its input and output channels are kept whole; it is priced by the convolutions inside it.
    (keras-hub's ViT embedding cannot rebuild from its own config; `backend.keras_fixes` repairs that.)
    """

    def couple_layout(self, call, inputs, builder):
        for elements in inputs:
            builder.fix([int(e) for e in elements.ravel()])
        outputs = []
        for shape in call.output_shapes:
            if shape[-1] is None:
                raise UnsupportedLayerError(f"Layer {call.layer.name!r} ({type(call.layer).__name__}) writes tokens of unknown width {shape}.")
            elements = builder.fresh(call.layer, int(shape[-1]))
            builder.fix(elements)
            outputs.append(on_last_axis(elements, len(shape)))
        return outputs

    def macs(self, call):
        """The patch projection: every output position of each convolution inside, times its kernel."""
        if not call.input_shapes:
            return 0
        total = 0
        for convolution in _convolutions(call.layer):
            output_shape = convolution.compute_output_shape(call.input_shapes[0])
            kernel = convolution.kernel.shape
            total += math.prod(size for size in output_shape[1:-1]) * math.prod(kernel)
        return total


def _convolutions(layer: keras.layers.Layer) -> list[keras.layers.Conv2D]:
    return [inner for inner in all_sublayers(layer) if isinstance(inner, keras.layers.Conv2D)]


def keras_hub_vision_transformer_handlers() -> dict[type, ChannelHandler]:
    """Handlers for keras-hub's ViT and DINOv2 layers, once keras_hub is imported ({} before)."""
    import sys

    if "keras_hub" not in sys.modules:
        return {}
    from keras_hub.src.models.dinov2.dinov2_layers import DINOV2Embedding, DINOV2LayerScale
    from keras_hub.src.models.vit.vit_layers import ViTPatchingAndEmbedding

    from segprune.graph.handlers.channelwise import ChannelwiseHandler

    return {
        ViTPatchingAndEmbedding: PatchEmbeddingHandler(),
        DINOV2Embedding: PatchEmbeddingHandler(),
        DINOV2LayerScale: ChannelwiseHandler(width_key="hidden_dim"),
    }
