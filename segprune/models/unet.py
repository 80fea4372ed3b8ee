"""U-Net (Ronneberger et al., 2015) with BatchNorm, sized for CPU pruning experiments."""

from __future__ import annotations

import keras
from keras import layers

from segprune.models._blocks import check_positive, classifier_head, conv_bn_relu, image_input

UPSAMPLING_MODES = ("transpose", "bilinear")


def unet(
    num_classes: int = 2,
    input_channels: int = 1,
    base_filters: int = 16,
    depth: int = 3,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
) -> keras.Model:
    """Builds a U-Net: `depth` down-sampling stages, a bottleneck, and a mirrored decoder with skips.

    Stage `i` has `base_filters * 2**i` filters. Height and width must be divisible by `2**depth`.

    Args:
        num_classes: Classes including background; 2 gives a one-channel sigmoid output.
        input_channels: Image channels (1 for grayscale, 3 for RGB).
        base_filters: Filters of the first stage.
        depth: Number of 2x down-sampling stages.
        batch_norm: Whether each convolution is followed by BatchNormalization.
        dropout: SpatialDropout2D rate in the bottleneck (0 disables it).
        upsampling: `"transpose"` (Conv2DTranspose 2x2, stride 2) or `"bilinear"` (UpSampling2D + 1x1 conv).

    Returns:
        An uncompiled functional `keras.Model` named `unet`.

    Example:
        >>> model = segprune.models.unet(num_classes=2, input_channels=1)
        >>> model.output_shape
        (None, None, None, 1)
    """
    check_positive("base_filters", base_filters)
    check_positive("depth", depth)
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")

    inputs = image_input(input_channels)
    x = inputs
    skips = []
    for stage in range(depth):
        filters = base_filters * 2**stage
        x = conv_bn_relu(x, filters, f"enc{stage}a", batch_norm)
        x = conv_bn_relu(x, filters, f"enc{stage}b", batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{stage}_pool")(x)

    bottleneck_filters = base_filters * 2**depth
    x = conv_bn_relu(x, bottleneck_filters, "mid_a", batch_norm)
    if dropout > 0:
        x = layers.SpatialDropout2D(dropout, name="mid_dropout")(x)
    x = conv_bn_relu(x, bottleneck_filters, "mid_b", batch_norm)

    for stage in reversed(range(depth)):
        filters = base_filters * 2**stage
        if upsampling == "transpose":
            x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"dec{stage}_up")(x)
        else:
            x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{stage}_up")(x)
            x = layers.Conv2D(filters, 1, name=f"dec{stage}_up_conv")(x)
        x = layers.Concatenate(name=f"dec{stage}_concat")([x, skips[stage]])
        x = conv_bn_relu(x, filters, f"dec{stage}a", batch_norm)
        x = conv_bn_relu(x, filters, f"dec{stage}b", batch_norm)

    outputs = classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name="unet")
