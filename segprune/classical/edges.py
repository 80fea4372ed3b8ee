"""Edge-based segmentation: Canny or Sobel edges turned into filled foreground regions.

The recipe, the same for both edge detectors:
1. smooth the grayscale image with a Gaussian of `sigma`;
2. find edges (Canny's hysteresis thresholds, or the Sobel magnitude above its Otsu threshold);
3. close gaps in the edge map with a disk of `closing_radius`;
4. fill the holes enclosed by edges (objects become solid regions);
5. remove connected regions smaller than `min_size` pixels (noise edges).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import feature, filters, morphology

from segprune.classical._checks import as_gray, non_negative, positive


def canny_segment(
    image: np.ndarray,
    sigma: float = 1.0,
    low_threshold: float | None = None,
    high_threshold: float | None = None,
    closing_radius: int = 3,
    min_size: int = 30,
) -> np.ndarray:
    """Foreground mask from Canny edges (thresholds as fractions of the gradient range; None: skimage's).

    Example:
        >>> mask = canny_segment(image)
        >>> mask.dtype, mask.shape == image.shape[:2]
        (dtype('int32'), True)
    """
    positive("sigma", sigma)
    gray = as_gray(image)
    edges = feature.canny(gray, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold)
    return _fill_regions(edges, closing_radius, min_size)


def sobel_segment(image: np.ndarray, sigma: float = 1.0, closing_radius: int = 2, min_size: int = 30) -> np.ndarray:
    """Foreground mask from the Sobel gradient magnitude, thresholded by Otsu's method."""
    non_negative("sigma", sigma)
    gray = as_gray(image)
    smoothed = filters.gaussian(gray, sigma=sigma) if sigma > 0 else gray
    magnitude = filters.sobel(smoothed)
    if np.ptp(magnitude) == 0:
        return np.zeros(gray.shape, dtype=np.int32)
    edges = magnitude > filters.threshold_otsu(magnitude)
    return _fill_regions(edges, closing_radius, min_size)


def _fill_regions(edges: np.ndarray, closing_radius: int, min_size: int) -> np.ndarray:
    non_negative("closing_radius", closing_radius)
    non_negative("min_size", min_size)
    closed = morphology.closing(edges, morphology.disk(closing_radius)) if closing_radius else edges
    filled = ndimage.binary_fill_holes(closed)
    if min_size:
        labels, _ = ndimage.label(filled)
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_size
        keep[0] = False
        filled = keep[labels]
    return filled.astype(np.int32)
