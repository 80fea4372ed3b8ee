"""Vision transformers' token embeddings (keras-hub's ViT, DINOv2 and ViTDet): an image cut into patches, each
projected by a strided convolution, with class, register and position tokens added; and the forms segprune traces
keras-hub's ViTDet blocks as (SAM's image encoder), whose own calls fold heads and windows into the batch axis.

The embedding width is the residual stream of every block after it, normalised by LayerNormalization over its
channels. Removing stream channels changes the mean and variance every LayerNorm computes, so no smaller model
equals the original with those channels zeroed: the embedding's channels are kept whole (fixed), and the heads
and MLP hidden units inside each block, which sit between a producer and a consumer, prune exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np
from keras import ops

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
    """Handlers for keras-hub's ViT, DINOv2 and ViTDet layers, once keras_hub is imported ({} before)."""
    import sys

    if "keras_hub" not in sys.modules:
        return {}
    from keras_hub.src.models.dinov2.dinov2_layers import DINOV2Embedding, DINOV2LayerScale
    from keras_hub.src.models.vit.vit_layers import ViTPatchingAndEmbedding
    from keras_hub.src.models.vit_det.vit_layers import AddPositionalEmbedding, ViTDetPatchingAndEmbedding

    from segprune.graph.handlers.channelwise import ChannelwiseHandler

    return {
        ViTPatchingAndEmbedding: PatchEmbeddingHandler(),
        DINOV2Embedding: PatchEmbeddingHandler(),
        DINOV2LayerScale: ChannelwiseHandler(width_key="hidden_dim"),
        ViTDetPatchingAndEmbedding: PatchEmbeddingHandler(),
        AddPositionalEmbedding: ChannelwiseHandler(width_key="embed_dim"),  # the stream it adds to stays whole
    }


def keras_hub_traced_forms() -> dict[type, Callable]:
    """keras-hub layers traced as a form of their call that segprune can follow ({} before keras_hub is imported).

    ViTDet (SAM's image encoder) folds windows and attention heads into the batch axis, computing the batch
    size from the input's shape, which is unknown while tracing. Its forms keep both on axes of their own: a
    head is then one class, pruned whole, and every call's cost counts every window (costs leave the batch out).
    """
    import sys

    if "keras_hub" not in sys.modules:
        return {}
    from keras_hub.src.models.vit_det.vit_layers import MultiHeadAttentionWithRelativePE, WindowedTransformerEncoder

    return {WindowedTransformerEncoder: windowed_encoder_form, MultiHeadAttentionWithRelativePE: relative_attention_form}


def windowed_encoder_form(block: keras.layers.Layer, x):
    """keras-hub's `WindowedTransformerEncoder.call`: pre-norm attention (within windows of `window_size`, the
    grid padded to whole windows, where it is above 0) and a pre-norm MLP, each added to the stream. Windows lie
    on an axis of their own, (batch, windows, size, size, channels)."""
    shortcut = x
    x = block.layer_norm1(x)
    size = block.window_size
    if size > 0:
        height, width, channels = x.shape[1:]
        padded = (height + (-height) % size, width + (-width) % size)
        if padded != (height, width):
            x = ops.pad(x, ((0, 0), (0, padded[0] - height), (0, padded[1] - width), (0, 0)))
        grid = (padded[0] // size, padded[1] // size)
        x = ops.reshape(x, (-1, grid[0], size, grid[1], size, channels))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, grid[0] * grid[1], size, size, channels))
    x = block.attention(x)
    if size > 0:
        x = ops.reshape(x, (-1, grid[0], grid[1], size, size, channels))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, *padded, channels))
        if padded != (height, width):
            x = x[:, :height, :width, :]
    x = shortcut + x
    return x + block.mlp_block(block.layer_norm2(x))


def relative_attention_form(attention: keras.layers.Layer, x):
    """keras-hub's `MultiHeadAttentionWithRelativePE.call` on (batch, [windows,] height, width, channels), with the
    heads on an axis of their own: queries, keys and values (batch, [windows,] heads, tokens, head size), scores
    and attended values by batched matrix products (no many-letter einsums, which tf2onnx's einsum optimiser
    decomposes by trying every permutation of their letters)."""
    windows = tuple(x.shape[1:-3])
    height, width = x.shape[-3:-1]
    tokens, heads, size, lead = height * width, attention.num_heads, attention.key_dim, len(windows)
    qkv = ops.reshape(attention.qkv(x), (-1, *windows, tokens, 3 * heads, size))
    to_heads = (0, *range(1, lead + 1), lead + 2, lead + 1, lead + 3)  # (batch, [windows,] heads, tokens, size)
    queries, keys, values = (ops.transpose(part, to_heads) for part in ops.split(qkv, 3, axis=-2))
    scores = ops.matmul(queries * attention.scale, ops.transpose(keys, (*range(lead + 2), lead + 3, lead + 2)))
    if attention.use_rel_pos:
        scores = scores + _relative_positions(attention.add_decomposed_relative_pe, queries, windows, (height, width))
    attended = ops.matmul(ops.softmax(scores, axis=-1), values)
    merged = ops.transpose(attended, (0, *range(1, lead + 1), lead + 2, lead + 1, lead + 3))
    return attention.projection(ops.reshape(merged, (-1, *windows, height, width, heads * size)))


def _relative_positions(relative: keras.layers.Layer, queries, windows: tuple, grid: tuple[int, int]):
    """keras-hub's decomposed relative positions for queries (batch, [windows,] heads, tokens, head size): per query,
    its product with the table row of every key row's offset plus that of every key column's, as scores (batch,
    [windows,] heads, tokens, tokens).

    Each term is an EinsumDense whose kernel is the table gathered at this grid's offsets, as keras-hub's layer
    gathers it on every call: one kernel for every head (and window), so a head pruned takes its terms with it and
    the tables stay whole. Windows and heads share one axis there (-1 in each reshape, so pruned heads need no
    edit). Gathered, the tables are untied: a row appears once per pair of positions at its offset, so
    fine-tuning may move the copies apart.
    """
    height, width = grid
    size = queries.shape[-1]
    on_grid = keras.layers.Reshape((-1, height, width, size))(queries)  # (batch, windows x heads, height, width, size)
    by_column = keras.layers.Reshape((-1, height, size))(ops.transpose(on_grid, (0, 1, 3, 2, 4)))
    rows = _relative_term(relative, "y", height, relative.rel_pos_h)(by_column)  # (batch, ... x width, height, key rows)
    rows = ops.transpose(keras.layers.Reshape((-1, width, height, height))(rows), (0, 1, 3, 2, 4))
    by_row = keras.layers.Reshape((-1, width, size))(on_grid)
    columns = keras.layers.Reshape((-1, height, width, width))(_relative_term(relative, "x", width, relative.rel_pos_w)(by_row))
    terms = ops.expand_dims(rows, -1) + ops.expand_dims(columns, -2)  # (batch, ..., height, width, key rows, key columns)
    return keras.layers.Reshape((*windows, -1, height * width, height * width))(terms)


def _relative_term(relative: keras.layers.Layer, letter: str, length: int, table) -> keras.layers.EinsumDense:
    """(batch, positions, `length`, head size) -> (batch, positions, `length`, `length` keys): per query position
    along `letter` (y rows, x columns), the table gathered by keras-hub's own `_get_rel_pos` (resized where the grid
    differs from the one the table was made for)."""
    gathered = keras.ops.convert_to_numpy(relative._get_rel_pos(length, length, table))  # (queries, keys, head size)
    term = keras.layers.EinsumDense(
        f"bm{letter}c,{letter}ck->bm{letter}k", output_shape=(None, length, length),
        name=f"{relative.name}_{'height' if letter == 'y' else 'width'}", dtype=relative.dtype_policy,
    )
    term.build((None, None, length, gathered.shape[-1]))
    term.kernel.assign(np.transpose(gathered, (0, 2, 1)))
    return term
