"""Input checks shared by the classical methods."""

from __future__ import annotations

import numpy as np


def as_gray(image: np.ndarray) -> np.ndarray:
    """A float (H, W) image in [0, 1] from (H, W), (H, W, 1) or (H, W, 3); anything else is refused."""
    array = np.asarray(image)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"Expected a numeric image array, got dtype {array.dtype}.")
    if array.ndim == 3 and array.shape[-1] in (1, 3):
        array = array.mean(axis=-1) if array.shape[-1] == 3 else array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"Expected an image of shape (H, W), (H, W, 1) or (H, W, 3), got {array.shape}.")
    if np.issubdtype(array.dtype, np.integer):
        array = array / np.iinfo(array.dtype).max
    return array.astype(np.float64)


def positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")


def non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}.")
