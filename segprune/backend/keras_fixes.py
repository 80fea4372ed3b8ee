"""Fixes for Keras bugs that segprune's models run into, applied once when `segprune.models` is imported."""

from __future__ import annotations

import keras
import numpy as np
from keras.src.ops import image as image_ops  # the private module whose resize check is relaxed


def allow_dynamic_resize() -> None:
    """Lets `UpSampling2D(interpolation="bilinear")` run on inputs of unknown height and width.

    Keras 3.15 validates `size[0] <= 0` in `keras.ops.image.resize` (keras-team/keras#22079). Inside a
    TensorFlow graph whose input is (None, None, C), UpSampling2D passes a symbolic size, and that Python
    comparison raises OperatorNotAllowedInGraphError: every bilinear U-Net with a dynamic input fails in
    `fit` and `predict`. This wrapper skips the check for symbolic sizes only (their positivity follows
    from the input shape) and changes nothing else. Idempotent.
    """
    if getattr(image_ops.resize, "_segprune_wrapped", False):
        return
    original = image_ops.resize

    def resize(images, size, *args, **kwargs):
        symbolic_size = not all(isinstance(value, (int, np.integer)) for value in size)
        if symbolic_size and not keras.src.backend.any_symbolic_tensors((images,)):
            return image_ops._resize(images, size, *args, **kwargs)
        return original(images, size, *args, **kwargs)

    resize._segprune_wrapped = True
    image_ops.resize = resize
