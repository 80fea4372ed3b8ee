"""From clusters to classes: a documented rule that needs no labels, and an oracle that uses them.

The rule ("bright"): on fluorescence-like images objects are brighter than the background, so clusters
whose mean intensity lies above the midpoint between the darkest and the brightest cluster mean are
foreground, the others background ("dark" flips it). With two clusters this is "the brighter cluster is
the foreground"; with many (DBSCAN with position features gives one per object) it keeps every bright one.
The oracle matches clusters to the true classes (Hungarian matching of the overlap counts when there
are no more clusters than classes, otherwise each cluster takes its majority class). It looks at the
ground truth, so its scores are an upper bound and are always reported as "oracle".
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from segprune.classical._checks import as_gray

MAPPINGS = ("bright", "dark", "oracle")


def map_by_brightness(clusters: np.ndarray, image: np.ndarray, foreground: str = "bright") -> np.ndarray:
    """1 where the pixel's cluster is on the bright ("bright") or dark ("dark") side of the cluster means."""
    if foreground not in ("bright", "dark"):
        raise ValueError(f"foreground must be 'bright' or 'dark', got {foreground!r}.")
    gray = as_gray(image)
    labels = np.unique(clusters)
    means = np.array([gray[clusters == label].mean() for label in labels])
    midpoint = (means.min() + means.max()) / 2
    if means.max() == means.min():
        return np.zeros(clusters.shape, dtype=np.int32)
    chosen = labels[means > midpoint] if foreground == "bright" else labels[means <= midpoint]
    return np.isin(clusters, chosen).astype(np.int32)


def map_by_oracle(clusters: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """Each cluster becomes the class the ground truth says fits it best (see the module docstring)."""
    valid = truth != ignore_index if ignore_index is not None else np.ones(truth.shape, dtype=bool)
    labels = np.unique(clusters)
    overlap = np.zeros((len(labels), num_classes), dtype=np.int64)
    for row, label in enumerate(labels):
        overlap[row] = np.bincount(truth[(clusters == label) & valid], minlength=num_classes)[:num_classes]
    mapping = np.argmax(overlap, axis=1)
    if len(labels) <= num_classes:
        rows, columns = linear_sum_assignment(-overlap)
        mapping[rows] = columns
    lookup = dict(zip(labels.tolist(), mapping.tolist()))
    return np.vectorize(lookup.get, otypes=[np.int32])(clusters)
