"""A plain vision-transformer segmenter: ViT blocks over a grid of patch tokens and a light convolutional head.

What a user writes when they want a transformer for masks without a pretrained backbone: patch embedding by a
strided convolution, conditional position encoding (a depthwise 3x3 convolution of the token grid added to it, as in
CPVT, so the model takes any image whose sides are multiples of the patch size), pre-norm transformer blocks whose
attention runs over both grid axes of the (batch, rows, columns, width) tokens, and a 3x3 convolution, bilinear
up-sampling and 1x1 logits as the head. Built only from Keras layers: it saves, loads and exports like the CNNs, and
`segprune.prune` removes whole attention heads and MLP units exactly (the token width, normalised by every
LayerNormalization, stays whole unless asked for).
"""

from __future__ import annotations

import keras
from keras import layers

from segprune.models._blocks import check_positive, classifier_head, conv_bn_relu, image_input


def vit_segmenter(
    num_classes: int = 2,
    input_channels: int = 1,
    patch_size: int = 8,
    hidden_dim: int = 64,
    num_layers: int = 4,
    num_heads: int = 8,
    mlp_dim: int = 128,
    head_filters: int = 32,
) -> keras.Model:
    """Builds the segmenter; image height and width must be multiples of `patch_size`.

    Args:
        num_classes: Classes including background; 2 gives a one-channel sigmoid output.
        input_channels: Image channels (1 for grayscale, 3 for RGB).
        patch_size: Side of the square patches (the token grid is the image divided by it).
        hidden_dim: Token width (the residual stream), divisible by `num_heads`.
        num_layers: Transformer blocks.
        num_heads: Attention heads per block, each `hidden_dim // num_heads` wide.
        mlp_dim: Hidden units of each block's MLP.
        head_filters: Filters of the head's 3x3 convolution.

    Returns:
        An uncompiled functional `keras.Model` named `vit_segmenter`.

    Example:
        >>> model = segprune.models.vit_segmenter(num_classes=2, input_channels=1)
        >>> model.output_shape
        (None, None, None, 1)
    """
    for name, value in (("patch_size", patch_size), ("hidden_dim", hidden_dim), ("num_layers", num_layers),
                        ("num_heads", num_heads), ("mlp_dim", mlp_dim), ("head_filters", head_filters)):
        check_positive(name, value)
    if hidden_dim % num_heads:
        raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads}): each head is hidden_dim // num_heads wide.")

    inputs = image_input(input_channels)
    x = layers.Conv2D(hidden_dim, patch_size, strides=patch_size, name="patch_embedding")(inputs)
    position = layers.DepthwiseConv2D(3, padding="same", name="position_conv")(x)
    x = layers.Add(name="position_add")([x, position])
    for block in range(num_layers):
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm1")(x)
        y = layers.MultiHeadAttention(num_heads, hidden_dim // num_heads, attention_axes=(1, 2), name=f"block{block}_attention")(y, y)
        x = layers.Add(name=f"block{block}_attention_add")([x, y])
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm2")(x)
        y = layers.Dense(mlp_dim, activation="gelu", name=f"block{block}_fc1")(y)
        y = layers.Dense(hidden_dim, name=f"block{block}_fc2")(y)
        x = layers.Add(name=f"block{block}_mlp_add")([x, y])
    x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    x = conv_bn_relu(x, head_filters, "head")
    x = layers.UpSampling2D(patch_size, interpolation="bilinear", name="upsample")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="vit_segmenter")
