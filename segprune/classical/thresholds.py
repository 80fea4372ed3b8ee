"""Intensity thresholding: Otsu, and watershed to split touching objects."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import feature, filters, segmentation

from segprune.classical._checks import as_gray, non_negative, positive


def otsu_segment(image: np.ndarray, sigma: float = 1.0, foreground: str = "bright") -> np.ndarray:
    """Pixels on the `foreground` side ("bright" or "dark") of Otsu's threshold after Gaussian smoothing."""
    non_negative("sigma", sigma)
    gray = _smoothed(image, sigma)
    if np.ptp(gray) == 0:
        return np.zeros(gray.shape, dtype=np.int32)
    above = gray > filters.threshold_otsu(gray)
    return (above if _bright(foreground) else ~above).astype(np.int32)


def watershed_segment(image: np.ndarray, sigma: float = 1.0, min_distance: int = 5, foreground: str = "bright") -> np.ndarray:
    """Otsu foreground split into objects by a watershed on its distance transform.

    Markers are the local maxima of the distance to the background, at least `min_distance` apart; the
    watershed lines between touching objects become background, so objects that Otsu merges come apart.

    Returns:
        Instance labels (0 background, 1..N objects); `labels > 0` is the semantic mask.
    """
    positive("min_distance", min_distance)
    return watershed_split(otsu_segment(image, sigma, foreground).astype(bool), min_distance)


def watershed_split(foreground: np.ndarray, min_distance: int = 5) -> np.ndarray:
    """A foreground mask split into objects by a watershed on its distance transform (any mask: Otsu's, a network's).

    Returns:
        Instance labels (0 background, 1..N objects), with watershed lines between touching objects.

    Example:
        >>> labels = watershed_split(probabilities > 0.5)
    """
    positive("min_distance", min_distance)
    mask = np.asarray(foreground, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    distance = ndimage.distance_transform_edt(mask)
    peaks = feature.peak_local_max(distance, min_distance=min_distance, labels=ndimage.label(mask)[0], exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-distance, markers, mask=mask, watershed_line=True).astype(np.int32)


def _smoothed(image: np.ndarray, sigma: float) -> np.ndarray:
    gray = as_gray(image)
    return filters.gaussian(gray, sigma=sigma) if sigma > 0 else gray


def _bright(foreground: str) -> bool:
    if foreground not in ("bright", "dark"):
        raise ValueError(f"foreground must be 'bright' or 'dark', got {foreground!r}.")
    return foreground == "bright"
