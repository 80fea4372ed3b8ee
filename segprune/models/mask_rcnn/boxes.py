"""Boxes: anchors per pyramid level, IoU, the delta encoding between boxes, and anchor/proposal matching.

Boxes are `(y1, x1, y2, x2)` in pixel-edge coordinates (pixel `(i, j)` covers `[i, i + 1) x [j, j + 1)`).
Targets are computed in NumPy outside the differentiated graph; `decode_boxes` is written with `keras.ops`
because inference runs it on the model's outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from keras import ops

# Delta scaling as in Faster R-CNN: the regression targets then have roughly unit variance.
BOX_DELTA_STD = np.array([0.1, 0.1, 0.2, 0.2], dtype=np.float32)
# exp() of a height/width delta is clipped here so that a wild early prediction cannot overflow.
MAX_LOG_SCALE = float(np.log(1000.0 / 16.0))


def level_anchors(image_shape: tuple[int, int], stride: int, sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
    """Anchors of one pyramid level, (H/stride * W/stride * A, 4), in row-major cell order and then anchor order.

    The order matches an RPN output of shape (H/stride, W/stride, A * k) reshaped to (-1, k).

    Example:
        >>> level_anchors((8, 8), stride=4, sizes=[4], aspect_ratios=[1.0])[0]
        array([0., 0., 4., 4.], dtype=float32)
    """
    height, width = -(-image_shape[0] // stride), -(-image_shape[1] // stride)
    shapes = np.array([(size / np.sqrt(ratio), size * np.sqrt(ratio)) for size in sizes for ratio in aspect_ratios], np.float32)
    centers_y = (np.arange(height, dtype=np.float32) + 0.5) * stride
    centers_x = (np.arange(width, dtype=np.float32) + 0.5) * stride
    cy, cx = np.meshgrid(centers_y, centers_x, indexing="ij")
    centers = np.stack([cy, cx], axis=-1)[:, :, None, :]  # (H, W, 1, 2)
    half = shapes[None, None, :, :] / 2.0  # (1, 1, A, 2) as (h, w) halves
    anchors = np.concatenate([centers - half, centers + half], axis=-1)
    return anchors.reshape(-1, 4).astype(np.float32)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU, (len(a), len(b)).

    Example:
        >>> box_iou(np.array([[0, 0, 2, 2]], float), np.array([[1, 1, 3, 3]], float))
        array([[0.14285714]])
    """
    a = np.asarray(boxes_a, dtype=np.float64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64)[None, :, :]
    inter_h = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_w = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = inter_h * inter_w
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def encode_boxes(boxes: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Deltas (dy, dx, dh, dw), scaled by BOX_DELTA_STD, that move `references` onto `boxes` (NumPy).

    Example:
        >>> deltas = encode_boxes(boxes, anchors)
        >>> np.allclose(decode_boxes(deltas, anchors), boxes, atol=1e-4)
        True
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    references = np.asarray(references, dtype=np.float32)
    ref_h, ref_w = references[:, 2] - references[:, 0], references[:, 3] - references[:, 1]
    ref_cy, ref_cx = references[:, 0] + 0.5 * ref_h, references[:, 1] + 0.5 * ref_w
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cy, cx = boxes[:, 0] + 0.5 * h, boxes[:, 1] + 0.5 * w
    deltas = np.stack([(cy - ref_cy) / ref_h, (cx - ref_cx) / ref_w, np.log(h / ref_h), np.log(w / ref_w)], axis=-1)
    return (deltas / BOX_DELTA_STD).astype(np.float32)


def decode_boxes(deltas, references):
    """Applies deltas (..., 4) to reference boxes (..., 4): the inverse of `encode_boxes`, on keras.ops."""
    deltas = ops.convert_to_tensor(deltas, "float32") * ops.convert_to_tensor(BOX_DELTA_STD)
    references = ops.convert_to_tensor(references, "float32")
    ref_h = references[..., 2] - references[..., 0]
    ref_w = references[..., 3] - references[..., 1]
    cy = references[..., 0] + 0.5 * ref_h + deltas[..., 0] * ref_h
    cx = references[..., 1] + 0.5 * ref_w + deltas[..., 1] * ref_w
    h = ref_h * ops.exp(ops.minimum(deltas[..., 2], MAX_LOG_SCALE))
    w = ref_w * ops.exp(ops.minimum(deltas[..., 3], MAX_LOG_SCALE))
    return ops.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip_boxes(boxes, image_shape: tuple[int, int]):
    """Clips boxes (..., 4) to the image (keras.ops)."""
    limits = ops.convert_to_tensor([image_shape[0], image_shape[1], image_shape[0], image_shape[1]], "float32")
    return ops.minimum(ops.maximum(boxes, 0.0), limits)


@dataclass(frozen=True)
class Matches:
    """Which ground-truth box each reference box (anchor or proposal) is assigned to.

    Attributes:
        labels: int8 (N,): 1 positive, 0 negative, -1 ignored (neither).
        gt_index: int (N,): the best-overlapping ground-truth box (meaningful where labels == 1).
    """

    labels: np.ndarray
    gt_index: np.ndarray


def match_boxes(
    references: np.ndarray,
    gt_boxes: np.ndarray,
    positive_iou: float,
    negative_iou: float,
    best_is_positive: bool,
) -> Matches:
    """Assigns references to ground truth by IoU: >= positive_iou positive, < negative_iou negative, else ignored.

    With `best_is_positive`, each ground-truth box's best reference(s) are positive too, so that every object
    has at least one positive anchor even when none overlaps it by `positive_iou` (small objects).

    Example:
        >>> match_boxes(anchors, gt_boxes, 0.7, 0.3, best_is_positive=True).labels
    """
    count = len(references)
    if len(gt_boxes) == 0:
        return Matches(np.zeros(count, np.int8), np.zeros(count, np.int64))
    iou = box_iou(references, gt_boxes)
    gt_index = iou.argmax(axis=1)
    best = iou.max(axis=1)
    labels = np.full(count, -1, np.int8)
    labels[best < negative_iou] = 0
    labels[best >= positive_iou] = 1
    if best_is_positive:
        best_per_gt = iou.max(axis=0)
        for column in np.flatnonzero(best_per_gt > 0):
            rows = np.flatnonzero(iou[:, column] >= best_per_gt[column] - 1e-6)
            labels[rows] = 1
            gt_index[rows] = column
    return Matches(labels, gt_index)


def sample_labels(labels: np.ndarray, count: int, positive_share: float, rng: np.random.Generator) -> np.ndarray:
    """Subsamples labels to at most `count` non-ignored entries, at most `positive_share` of them positive.

    Returns a copy in which the entries not drawn are set to -1 (ignored).
    """
    labels = labels.copy()
    positives = np.flatnonzero(labels == 1)
    max_positives = int(count * positive_share)
    if len(positives) > max_positives:
        labels[rng.choice(positives, len(positives) - max_positives, replace=False)] = -1
    negatives = np.flatnonzero(labels == 0)
    max_negatives = count - int(np.sum(labels == 1))
    if len(negatives) > max_negatives:
        labels[rng.choice(negatives, len(negatives) - max_negatives, replace=False)] = -1
    return labels

