"""Running a segmentation model on images of any size and reading its output as class indices."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import keras
import numpy as np

from segprune.data.pipeline import adapt_channels
from segprune.models.outputs import OutputKind, base_model, check_image_input, output_kind
from segprune.sizes import ImageSize, as_image_size, format_size

DEFAULT_PAD_MULTIPLE = 32
DEFAULT_MEASUREMENT_SIZE = (256, 256)  # where a model takes any size and none is given


def input_channels(model: keras.Model) -> int:
    return int(base_model(model).inputs[0].shape[-1])


def probabilities_to_classes(outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
    """(batch, H, W, channels) outputs to (batch, H, W) class indices under the model's convention."""
    if kind.channels == 1:
        threshold = 0.0 if kind.from_logits else 0.5
        return (outputs[..., 0] > threshold).astype(np.int32)
    return np.argmax(outputs, axis=-1).astype(np.int32)


def fixed_input_size(model: keras.Model) -> tuple[int, int] | None:
    """The (height, width) a model was built for (keras-hub segmenters built with `image_shape`), or None
    when it takes any size."""
    height, width = base_model(model).inputs[0].shape[1:3]
    if (height is None) != (width is None):
        raise ValueError(
            f"Model {base_model(model).name!r} is built for inputs of height {height} and width {width}; segprune needs both "
            "fixed or neither. Build it for one size (e.g. image_shape=(512, 512, channels)) or for any size "
            "(image_shape=(None, None, channels))."
        )
    return None if height is None else (int(height), int(width))


def measurement_size(model: keras.Model, image_size: int | Sequence[int] | str | None = None) -> ImageSize:
    """The (height, width) at which MACs and latency are measured: `image_size` when given (N or (height, width)),
    else the size the model was built for, else 256x256.

    Raises:
        ValueError: The model is built for another size than `image_size`.

    Example:
        >>> measurement_size(segprune.models.unet(), (256, 512))
        (256, 512)
    """
    check_image_input(model)  # a channels-first model's (channels, height) would read as a size
    size = None if image_size is None else as_image_size(image_size)
    fixed = fixed_input_size(model)
    if fixed is None:
        return DEFAULT_MEASUREMENT_SIZE if size is None else size
    if size is not None and size != fixed:
        raise ValueError(
            f"Model {base_model(model).name!r} is built for {format_size(fixed)} inputs, so it cannot be measured at "
            f"{format_size(size)}; leave the image size out (or pass {format_size(fixed)})."
        )
    return fixed


def predict_classes(
    model: keras.Model,
    images: Sequence[np.ndarray],
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """Class-index maps for images of any size (see `predict_maps`).

    Example:
        >>> masks = predict_classes(model, [image])
        >>> masks[0].shape == image.shape[:2]
        True
    """
    kind = output_kind(model)
    classes = []
    for start in range(0, len(images), batch_size):  # float maps of one batch of images at a time
        maps = predict_maps(model, images[start : start + batch_size], pad_multiple, batch_size)
        classes.extend(probabilities_to_classes(outputs[None], kind)[0] for outputs in maps)
    return classes


def predict_maps(
    model: keras.Model,
    images: Sequence[np.ndarray],
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """The model's outputs, (H, W, channels) per image, for images of any size.

    Each image is adapted to the model's input channels. A model that takes any size sees the image
    reflect-padded to a multiple of `pad_multiple` (the strides of encoder-decoder models demand it), and
    the output is cropped back; images of one size are batched together. A model built for one size sees
    tiles of that size (`tiles_of`), batched across images and stitched back.
    """
    channels = input_channels(model)
    fixed = fixed_input_size(model)
    if fixed is not None:
        return stitch_tiles(model.predict_on_batch, [adapt_channels(image, channels) for image in images], fixed, batch_size)
    results: list[np.ndarray | None] = [None] * len(images)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_shape.setdefault(image.shape[:2], []).append(index)
    for (height, width), indices in by_shape.items():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            batch = np.stack([pad_to_multiple(adapt_channels(images[i], channels), pad_multiple) for i in chunk])
            outputs = np.asarray(model.predict_on_batch(batch))[:, :height, :width]
            for position, index in enumerate(chunk):
                results[index] = outputs[position]
    return results  # type: ignore[return-value]


def stitch_tiles(run, images: Sequence[np.ndarray], size: tuple[int, int], batch_size: int, fixed_batch: bool = False) -> list[np.ndarray]:
    """`run`'s outputs over images of any size, (H, W, channels) each, from tiles of `size` (`tiles_of`).

    `run` maps a batch of tiles to their outputs (a Keras model's `predict_on_batch`, an exported model's
    runner). Tiles are batched across images, `batch_size` at a time; with `fixed_batch` every batch holds
    exactly `batch_size` tiles (an export with a fixed batch), the last filled by repeating its final tile.
    """
    height, width = size
    placed = [(index, top, left, tile) for index, image in enumerate(images) for tile, (top, left) in tiles_of(image, height, width)]
    results: list[np.ndarray | None] = [None] * len(images)
    for start in range(0, len(placed), batch_size):
        chunk = placed[start : start + batch_size]
        tiles = [tile for *_, tile in chunk]
        if fixed_batch:
            tiles += tiles[-1:] * (batch_size - len(tiles))
        outputs = np.asarray(run(np.stack(tiles).astype(np.float32)))
        for (index, top, left, _), output in zip(chunk, outputs):
            image = images[index]
            if results[index] is None:
                results[index] = np.zeros((*image.shape[:2], output.shape[-1]), output.dtype)
            rows, cols = min(height, image.shape[0] - top), min(width, image.shape[1] - left)
            results[index][top : top + rows, left : left + cols] = output[:rows, :cols]
    return results  # type: ignore[return-value]


def tiles_of(image: np.ndarray, height: int, width: int) -> Iterator[tuple[np.ndarray, tuple[int, int]]]:
    """(tile, (top, left)) covering an (H, W, C) image with tiles of exactly (height, width).

    Tiles step by their size; the last of a row or column is moved back to end at the image's edge (it
    overlaps its neighbour). An image smaller than a tile gives one mirror-padded tile.
    """
    tops = _starts(image.shape[0], height)
    lefts = _starts(image.shape[1], width)
    for top in tops:
        for left in lefts:
            yield fit_to_shape(image[top : top + height, left : left + width], height, width), (top, left)


def _starts(size: int, tile: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile))
    return [*starts, size - tile]


def fit_to_shape(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An (H, W, C) image cropped (top-left) or mirror-padded (bottom, right) to exactly (height, width, C)."""
    image = image[:height, :width]
    pad_rows, pad_cols = height - image.shape[0], width - image.shape[1]
    if pad_rows or pad_cols:
        image = np.pad(image, ((0, pad_rows), (0, pad_cols), (0, 0)), mode="symmetric")
    return image


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
