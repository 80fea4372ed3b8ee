"""Mask R-CNN losses on keras.ops: RPN objectness and box, classifier, box regression, mask BCE on positives."""

from __future__ import annotations

import numpy as np
from keras import ops

# Smooth L1 turns linear at an error of 1 on the BOX_DELTA_STD-scaled deltas; averaged over the four
# coordinates, the box losses then weigh about as much as the classification losses (as in Matterport's Mask R-CNN).
SMOOTH_L1_BETA = 1.0


def smooth_l1(predicted, target):
    """Smooth L1 averaged over the last axis."""
    error = ops.abs(predicted - target)
    per_coordinate = ops.where(error < SMOOTH_L1_BETA, 0.5 * error**2 / SMOOTH_L1_BETA, error - 0.5 * SMOOTH_L1_BETA)
    return ops.mean(per_coordinate, axis=-1)


def rpn_losses(objectness_logits, deltas, labels: np.ndarray, delta_targets: np.ndarray):
    """(objectness BCE over sampled anchors, smooth L1 over positive anchors); labels -1 are left out."""
    sampled = labels >= 0
    positive = labels == 1
    logits = ops.reshape(objectness_logits, (-1,))
    flat_sampled = np.flatnonzero(sampled.reshape(-1))
    targets = ops.convert_to_tensor(positive.reshape(-1)[flat_sampled].astype(np.float32))
    objectness = ops.mean(ops.binary_crossentropy(targets, ops.take(logits, flat_sampled), from_logits=True))
    flat_positive = np.flatnonzero(positive.reshape(-1))
    if len(flat_positive) == 0:
        return objectness, ops.convert_to_tensor(0.0)
    predicted = ops.take(ops.reshape(deltas, (-1, 4)), flat_positive, axis=0)
    box = ops.mean(smooth_l1(predicted, delta_targets.reshape(-1, 4)[flat_positive]))
    return objectness, box


def head_losses(class_logits, box_deltas, mask_logits, class_ids: np.ndarray, delta_targets: np.ndarray, mask_targets: np.ndarray):
    """(classifier CE, class-specific box smooth L1 on positives, mask BCE on positives at their class)."""
    classification = ops.mean(ops.sparse_categorical_crossentropy(class_ids, class_logits, from_logits=True))
    positive = np.flatnonzero(class_ids > 0)
    if len(positive) == 0:
        zero = ops.convert_to_tensor(0.0)
        return classification, zero, zero
    num_classes = ops.shape(class_logits)[-1]
    deltas = ops.reshape(ops.take(box_deltas, positive, axis=0), (len(positive), num_classes, 4))
    one_hot = ops.one_hot(class_ids[positive], num_classes)
    chosen = ops.sum(deltas * one_hot[:, :, None], axis=1)
    box = ops.mean(smooth_l1(chosen, delta_targets[positive]))
    # mask_logits are those of the positive RoIs only, in order: (P, S, S, num_classes).
    logits = ops.sum(mask_logits * one_hot[:, None, None, :], axis=-1)
    mask = ops.mean(ops.binary_crossentropy(mask_targets, logits, from_logits=True))
    return classification, box, mask
