"""Layer blocks shared by the built-in architectures."""

from __future__ import annotations

import keras
from keras import layers

# Keras' default 0.99 lags far behind the weights on the few hundred steps small datasets give; 0.9 keeps
# the moving statistics (used at inference) close to the batch statistics seen in training.
BN_MOMENTUM = 0.9


def conv_bn_relu(x, filters: int, name: str, batch_norm: bool = True, kernel_size: int = 3):
    """Conv2D (no bias when BatchNorm follows), optional BatchNorm, ReLU."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm, name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def classifier_head(x, num_classes: int, name: str = "head"):
    """The output convention of every segprune model.

    Binary segmentation (`num_classes == 2`) gives one channel with a sigmoid: the foreground probability.
    More classes give `num_classes` channels with a softmax over them.
    """
    check_num_classes(num_classes)
    if num_classes == 2:
        logits = layers.Conv2D(1, 1, name=f"{name}_logits")(x)
        return layers.Activation("sigmoid", name=f"{name}_sigmoid", dtype="float32")(logits)
    logits = layers.Conv2D(num_classes, 1, name=f"{name}_logits")(x)
    return layers.Activation("softmax", name=f"{name}_softmax", dtype="float32")(logits)


def check_num_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2 (background counts as a class; 2 means binary), "
            f"got {num_classes!r}."
        )


def check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def image_input(input_channels: int, name: str = "image") -> keras.KerasTensor:
    """A dynamic-size image input: any height and width the architecture's strides allow."""
    check_positive("input_channels", input_channels)
    return keras.Input(shape=(None, None, input_channels), name=name)
