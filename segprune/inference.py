"""Running a segmentation model on images of any size and reading its output as class indices."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from segprune.data.pipeline import adapt_channels
from segprune.models.outputs import OutputKind, base_model, output_kind

DEFAULT_PAD_MULTIPLE = 32


def input_channels(model: keras.Model) -> int:
    return int(base_model(model).inputs[0].shape[-1])


def probabilities_to_classes(outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
    """(batch, H, W, channels) outputs to (batch, H, W) class indices under the model's convention."""
    if kind.channels == 1:
        threshold = 0.0 if kind.from_logits else 0.5
        return (outputs[..., 0] > threshold).astype(np.int32)
    return np.argmax(outputs, axis=-1).astype(np.int32)


def predict_classes(
    model: keras.Model,
    images: Sequence[np.ndarray],
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """Class-index maps for images of any size.

    Each image is adapted to the model's input channels and reflect-padded to a multiple of
    `pad_multiple` (the strides of encoder-decoder models demand it); the prediction is cropped back.
    Images of one size are batched together.

    Example:
        >>> masks = predict_classes(model, [image])
        >>> masks[0].shape == image.shape[:2]
        True
    """
    kind = output_kind(model)
    channels = input_channels(model)
    results: list[np.ndarray | None] = [None] * len(images)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_shape.setdefault(image.shape[:2], []).append(index)
    for (height, width), indices in by_shape.items():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            batch = np.stack([pad_to_multiple(adapt_channels(images[i], channels), pad_multiple) for i in chunk])
            outputs = np.asarray(model.predict_on_batch(batch))
            classes = probabilities_to_classes(outputs, kind)[:, :height, :width]
            for position, index in enumerate(chunk):
                results[index] = classes[position]
    return results  # type: ignore[return-value]


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pads the bottom and right of an (H, W, C) image up to multiples of `multiple`."""
    if multiple <= 1:
        return image
    pad_rows = -image.shape[0] % multiple
    pad_cols = -image.shape[1] % multiple
    if not (pad_rows or pad_cols):
        return image
    mode = "reflect" if pad_rows < image.shape[0] and pad_cols < image.shape[1] else "symmetric"
    return np.pad(image, ((0, pad_rows), (0, pad_cols), (0, 0)), mode=mode)
