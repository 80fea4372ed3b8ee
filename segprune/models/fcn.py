"""FCN-8s (Long, Shelhamer, Darrell, 2015) on a small VGG-like encoder."""

from __future__ import annotations

import keras
from keras import layers

from segprune.models._blocks import check_num_classes, check_positive, conv_bn_relu, image_input

STAGE_MULTIPLIERS = (1, 2, 4, 8, 8)


def fcn(
    num_classes: int = 2,
    input_channels: int = 1,
    base_filters: int = 16,
    batch_norm: bool = True,
) -> keras.Model:
    """Builds an FCN-8s: five conv stages, class score maps at strides 8, 16 and 32 fused with `Add`.

    The coarse scores are up-sampled by learned Conv2DTranspose layers (2x, 2x, then 8x), as in the
    original FCN-8s. Height and width must be divisible by 32.

    Args:
        num_classes: Classes including background; 2 gives a one-channel sigmoid output.
        input_channels: Image channels.
        base_filters: Filters of the first stage; the stages use 1, 2, 4, 8, 8 times as many.
        batch_norm: Whether each convolution is followed by BatchNormalization.

    Returns:
        An uncompiled functional `keras.Model` named `fcn8s`.

    Example:
        >>> model = segprune.models.fcn(num_classes=3, input_channels=3)
        >>> model.output_shape
        (None, None, None, 3)
    """
    check_num_classes(num_classes)
    check_positive("base_filters", base_filters)
    score_channels = 1 if num_classes == 2 else num_classes

    inputs = image_input(input_channels)
    x = inputs
    pools = []
    for stage, multiplier in enumerate(STAGE_MULTIPLIERS):
        x = conv_bn_relu(x, base_filters * multiplier, f"stage{stage}a", batch_norm)
        x = conv_bn_relu(x, base_filters * multiplier, f"stage{stage}b", batch_norm)
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        pools.append(x)

    x = conv_bn_relu(x, base_filters * 16, "fc6", batch_norm)
    x = conv_bn_relu(x, base_filters * 16, "fc7", batch_norm, kernel_size=1)
    score = layers.Conv2D(score_channels, 1, name="score_stride32")(x)

    score = layers.Conv2DTranspose(score_channels, 4, strides=2, padding="same", name="up_stride16")(score)
    score_pool4 = layers.Conv2D(score_channels, 1, name="score_stride16")(pools[3])
    score = layers.Add(name="fuse_stride16")([score, score_pool4])

    score = layers.Conv2DTranspose(score_channels, 4, strides=2, padding="same", name="up_stride8")(score)
    score_pool3 = layers.Conv2D(score_channels, 1, name="score_stride8")(pools[2])
    score = layers.Add(name="fuse_stride8")([score, score_pool3])

    logits = layers.Conv2DTranspose(score_channels, 16, strides=8, padding="same", name="head_logits")(score)
    activation = "sigmoid" if num_classes == 2 else "softmax"
    outputs = layers.Activation(activation, name=f"head_{activation}", dtype="float32")(logits)
    return keras.Model(inputs, outputs, name="fcn8s")
