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


def contiguous_torch_cross_entropy() -> None:
    """Lets channels-last sparse categorical cross-entropy train under the PyTorch backend.

    Keras 3.15's torch `sparse_categorical_crossentropy` moves the class axis to position 1 with `movedim`,
    a non-contiguous view; on the CPU, PyTorch's `nll_loss` backward then fails with "grad_input must be
    contiguous", so no multi-class (softmax, probabilities) segmentation model trains. This wrapper hands it
    the moved axis as a contiguous tensor and changes nothing else. Idempotent; a no-op on other backends.
    """
    if keras.backend.backend() != "torch":
        return
    from keras.src.backend.torch import nn as torch_nn  # the private module whose loss is wrapped

    if getattr(torch_nn.sparse_categorical_crossentropy, "_segprune_wrapped", False):
        return
    original = torch_nn.sparse_categorical_crossentropy

    def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
        output, target = torch_nn.convert_to_tensor(output), torch_nn.convert_to_tensor(target)
        class_axis = axis % output.dim()
        if output.dim() > 2 and class_axis != 1:
            if target.dim() == output.dim() and target.shape[class_axis] == 1:
                target = target.squeeze(class_axis)
            output, axis = output.movedim(class_axis, 1).contiguous(), 1
        return original(target, output, from_logits=from_logits, axis=axis)

    sparse_categorical_crossentropy._segprune_wrapped = True
    torch_nn.sparse_categorical_crossentropy = sparse_categorical_crossentropy


def keras_hub_vit_embedding_round_trip() -> None:
    """Lets keras-hub's `ViTPatchingAndEmbedding` be rebuilt from its own config.

    keras-hub 0.32 writes `num_patches` and `num_positions` into the layer's config, which its constructor computes
    and refuses, and leaves `use_patch_bias` out: a functional model holding the layer (a ViT that segprune made
    plain and pruned) could be neither copied nor loaded back. The config gains `use_patch_bias` and `from_config`
    drops the two derived entries; nothing else changes. Idempotent; a no-op until keras_hub is imported.
    """
    import sys

    if "keras_hub" not in sys.modules:
        return
    from keras_hub.src.models.vit.vit_layers import ViTPatchingAndEmbedding

    if getattr(ViTPatchingAndEmbedding, "_segprune_round_trip", False):
        return
    original_config = ViTPatchingAndEmbedding.get_config

    def get_config(self):
        return {**original_config(self), "use_patch_bias": self.use_patch_bias}

    def from_config(cls, config):
        derived = ("num_patches", "num_positions")
        return keras.layers.Layer.from_config.__func__(cls, {key: value for key, value in config.items() if key not in derived})

    ViTPatchingAndEmbedding.get_config = get_config
    ViTPatchingAndEmbedding.from_config = classmethod(from_config)
    ViTPatchingAndEmbedding._segprune_round_trip = True
