"""U-Net with a MobileNetV2 encoder and a pix2pix-style decoder (TensorFlow's segmentation tutorial)."""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from segprune.models._blocks import BN_MOMENTUM, check_positive, classifier_head, image_input

# Encoder activations used as skips, from stride 2 down to stride 32.
SKIP_LAYERS = (
    "block_1_expand_relu",
    "block_3_expand_relu",
    "block_6_expand_relu",
    "block_13_expand_relu",
    "block_16_project",
)
DECODER_FILTERS = (512, 256, 128, 64)


def mobilenet_unet(
    num_classes: int = 2,
    input_channels: int = 3,
    alpha: float = 1.0,
    encoder_weights: str | Path | None = None,
    decoder_filters: tuple[int, ...] | None = None,
) -> keras.Model:
    """Builds a U-Net whose encoder is `keras.applications.MobileNetV2`, kept as a nested model.

    Inputs in [0, 1] are rescaled to [-1, 1] (what MobileNetV2 weights expect) before the encoder. Each
    decoder step is Conv2DTranspose(3x3, stride 2) + BatchNorm + ReLU, then concatenation with the
    encoder skip at that resolution. Height and width must be divisible by 32.

    Args:
        num_classes: Classes including background; 2 gives a one-channel sigmoid output.
        input_channels: Image channels; a weights file for the encoder fixes this to what it was trained on.
        alpha: MobileNetV2 width multiplier (0.35, 0.5, 0.75, 1.0, 1.3 or 1.4).
        encoder_weights: None for random initialisation, or the path of a MobileNetV2 weights file
            (`include_top=False`) on disk. Nothing is ever downloaded.
        decoder_filters: Filters of the four decoder steps, from coarse to fine; by default
            (512, 256, 128, 64) scaled by `alpha` and rounded to multiples of 8.

    Returns:
        An uncompiled functional `keras.Model` named `mobilenet_unet` with a nested model `encoder`.

    Example:
        >>> model = segprune.models.mobilenet_unet(num_classes=3, alpha=0.35)
        >>> model.get_layer("encoder").__class__.__name__
        'Functional'
    """
    if encoder_weights is not None:
        weights_path = Path(encoder_weights)
        if not weights_path.is_file():
            raise FileNotFoundError(
                f"encoder_weights {str(weights_path)!r} is not a file. Pass the path of a MobileNetV2 "
                "weights file saved with include_top=False, or None for random initialisation."
            )
        encoder_weights = str(weights_path)
    if decoder_filters is None:
        decoder_filters = tuple(max(8, int(round(f * alpha / 8)) * 8) for f in DECODER_FILTERS)
    if len(decoder_filters) != len(SKIP_LAYERS) - 1:
        raise ValueError(f"decoder_filters needs {len(SKIP_LAYERS) - 1} entries, got {decoder_filters!r}.")
    for value in decoder_filters:
        check_positive("each decoder_filters entry", value)

    backbone = keras.applications.MobileNetV2(
        input_shape=(None, None, input_channels),
        include_top=False,
        weights=encoder_weights,
        alpha=alpha,
    )
    encoder = keras.Model(
        backbone.input,
        [backbone.get_layer(name).output for name in SKIP_LAYERS],
        name="encoder",
    )

    inputs = image_input(input_channels)
    x = layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(inputs)
    skips = encoder(x)
    x = skips[-1]
    for step, (filters, skip) in enumerate(zip(decoder_filters, reversed(skips[:-1]))):
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False, name=f"up{step}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"up{step}_bn")(x)
        x = layers.ReLU(name=f"up{step}_relu")(x)
        x = layers.Concatenate(name=f"up{step}_concat")([x, skip])
    x = layers.Conv2DTranspose(decoder_filters[-1], 3, strides=2, padding="same", name="up_final")(x)
    outputs = classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name="mobilenet_unet")
