"""Reading image and mask files into arrays, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")


class DataError(ValueError):
    """A dataset file or layout segprune cannot use; the message names the file and the fix."""


def read_array(path: Path, palette_indices: bool = False) -> np.ndarray:
    """A file's pixels; palette images become RGB, or their palette indices with `palette_indices`."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return np.asarray(tifffile.imread(path))
        with Image.open(path) as image:
            if palette_indices and image.mode == "P":
                return np.asarray(image)
            if image.mode in ("P", "CMYK", "YCbCr", "LA", "PA"):
                image = image.convert("RGBA" if "A" in image.mode else "RGB")
            return np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError, tifffile.TiffFileError) as error:
        raise DataError(f"Cannot read {str(path)!r}: {error}. Replace or remove the file.") from error


def read_image(path: Path) -> np.ndarray:
    """An image as float32 (height, width, channels) in [0, 1]; an alpha channel is dropped."""
    array = read_array(path)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise DataError(f"Image {str(path)!r} has shape {array.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).")
    if array.shape[-1] in (2, 4):
        array = array[..., :-1]
    return to_unit_float(array, source=str(path))


def to_unit_float(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if low < 0.0 or high > 1.0:
            raise DataError(f"Float image {source!r} has values in [{low:g}, {high:g}]; expected [0, 1]. Rescale it.")
        return array.astype(np.float32)
    raise DataError(f"Image {source!r} has pixel type {array.dtype}; expected uint8, uint16 or float in [0, 1].")


def read_mask(path: Path) -> np.ndarray:
    """A mask as int32 (height, width) of class indices; a palette PNG (Pascal VOC) gives its palette indices."""
    array = read_array(path, palette_indices=True)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and _channels_equal(array[..., :3]):
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise DataError(
            f"Mask {str(path)!r} has shape {array.shape}; a mask holds one class index per pixel (H, W). "
            "Colour-coded masks must be converted to index masks first."
        )
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise DataError(f"Mask {str(path)!r} has pixel type {array.dtype}; class indices must be integers.")
    return array.astype(np.int32)


def _channels_equal(array: np.ndarray) -> bool:
    return bool(np.all(array[..., 0] == array[..., 1]) and np.all(array[..., 0] == array[..., 2]))
