"""Pixel clustering: K-means on intensity/colour (optionally position), DBSCAN on a seeded subsample.

Both return cluster indices per pixel; `mapping.py` turns clusters into classes.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import DBSCAN, KMeans
from sklearn.neighbors import NearestNeighbors

from segprune.classical._checks import non_negative, positive


def pixel_features(image: np.ndarray, position_weight: float = 0.0) -> np.ndarray:
    """(H*W, C [+2]) features: intensity or colour in [0, 1], plus row/column scaled by `position_weight`."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"Expected an image of shape (H, W), (H, W, 1) or (H, W, 3), got {np.shape(image)}.")
    non_negative("position_weight", position_weight)
    height, width, channels = array.shape
    features = array.reshape(-1, channels)
    if position_weight > 0:
        rows, cols = np.mgrid[0:height, 0:width]
        positions = np.stack([rows.ravel() / max(height, width), cols.ravel() / max(height, width)], axis=1)
        features = np.concatenate([features, position_weight * positions], axis=1)
    return features


def kmeans_segment(image: np.ndarray, num_clusters: int = 2, position_weight: float = 0.0, seed: int = 0) -> np.ndarray:
    """K-means cluster index per pixel (scikit-learn's KMeans, k-means++ initialisation, seeded).

    Example:
        >>> clusters = kmeans_segment(image, num_clusters=3)
        >>> clusters.shape == image.shape[:2]
        True
    """
    features = pixel_features(image, position_weight)
    if not isinstance(num_clusters, int) or num_clusters < 2:
        raise ValueError(f"num_clusters must be an integer >= 2, got {num_clusters!r}.")
    if num_clusters > len(features):
        raise ValueError(f"num_clusters={num_clusters} is more than the image's {len(features)} pixels.")
    model = KMeans(n_clusters=num_clusters, n_init=3, random_state=seed).fit(features)
    return model.labels_.reshape(np.shape(image)[:2]).astype(np.int32)


def dbscan_segment(
    image: np.ndarray,
    eps: float = 0.03,
    min_samples: int = 10,
    sample_size: int = 4000,
    position_weight: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """DBSCAN cluster index per pixel, with memory bounded by `sample_size`.

    DBSCAN runs on a seeded random subsample of the pixels; every pixel (sampled or not) then takes the
    cluster of its nearest core sample, so noise points are absorbed and large images cost no more
    memory than the sample. If DBSCAN finds no core sample at all, every pixel is cluster 0. By default
    pixel positions are features too, so each object tends to become a cluster of its own (intensity
    alone is one dense continuum on most images).
    """
    positive("eps", eps)
    if not isinstance(min_samples, int) or min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}.")
    if not isinstance(sample_size, int) or sample_size < min_samples:
        raise ValueError(f"sample_size must be an integer >= min_samples ({min_samples}), got {sample_size!r}.")
    features = pixel_features(image, position_weight)
    rng = np.random.default_rng(seed)
    sample = features[rng.choice(len(features), size=min(sample_size, len(features)), replace=False)]
    clustering = DBSCAN(eps=eps, min_samples=min_samples).fit(sample)
    core = clustering.core_sample_indices_
    if len(core) == 0:
        return np.zeros(np.shape(image)[:2], dtype=np.int32)
    nearest = NearestNeighbors(n_neighbors=1).fit(sample[core])
    _, index = nearest.kneighbors(features)
    return clustering.labels_[core][index[:, 0]].reshape(np.shape(image)[:2]).astype(np.int32)
