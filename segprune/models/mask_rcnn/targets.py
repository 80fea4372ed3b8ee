"""Training targets, computed in NumPy from the ground truth: anchors for the RPN, sampled proposals for the heads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from keras import ops

from segprune.models.mask_rcnn.boxes import encode_boxes, match_boxes, sample_labels
from segprune.models.mask_rcnn.config import MaskRCNNConfig
from segprune.models.mask_rcnn.roi_align import roi_align


@dataclass(frozen=True)
class RPNTargets:
    """Per image and anchor: labels (1, 0, or -1 not in the loss) and box deltas (meaningful where positive)."""

    labels: np.ndarray  # (batch, A) int8
    deltas: np.ndarray  # (batch, A, 4) float32


def rpn_targets(anchors: np.ndarray, gt_boxes: list[np.ndarray], config: MaskRCNNConfig, rng: np.random.Generator) -> RPNTargets:
    labels = np.zeros((len(gt_boxes), len(anchors)), np.int8)
    deltas = np.zeros((len(gt_boxes), len(anchors), 4), np.float32)
    for image, boxes in enumerate(gt_boxes):
        matches = match_boxes(anchors, boxes, config.rpn_positive_iou, config.rpn_negative_iou, best_is_positive=True)
        labels[image] = sample_labels(matches.labels, config.rpn_samples, 0.5, rng)
        positive = labels[image] == 1
        if positive.any():
            deltas[image, positive] = encode_boxes(boxes[matches.gt_index[positive]], anchors[positive])
    return RPNTargets(labels, deltas)


@dataclass(frozen=True)
class RoITargets:
    """The proposals sampled for the heads of a whole batch, and what they should predict.

    Attributes:
        boxes: (R, 4) sampled proposals (ground-truth boxes included).
        image_indices: (R,) image of each proposal.
        class_ids: (R,) target class, 0 for background.
        deltas: (R, 4) box deltas toward the matched object (meaningful where class_ids > 0).
        masks: (P, mask_size, mask_size) float 0/1 targets of the positive proposals, in order.
    """

    boxes: np.ndarray
    image_indices: np.ndarray
    class_ids: np.ndarray
    deltas: np.ndarray
    masks: np.ndarray

    @property
    def positive(self) -> np.ndarray:
        return self.class_ids > 0


def roi_targets(
    proposals: list[np.ndarray],
    gt_boxes: list[np.ndarray],
    gt_classes: list[np.ndarray],
    gt_masks: list[np.ndarray],
    config: MaskRCNNConfig,
    rng: np.random.Generator,
) -> RoITargets:
    """Samples proposals per image (the objects' own boxes added, so positives exist from the first step)."""
    boxes, indices, classes, deltas, masks = [], [], [], [], []
    for image, (candidates, truth, truth_classes, truth_masks) in enumerate(zip(proposals, gt_boxes, gt_classes, gt_masks)):
        candidates = np.concatenate([candidates, truth]).astype(np.float32)
        matches = match_boxes(candidates, truth, config.roi_positive_iou, config.roi_positive_iou, best_is_positive=False)
        labels = sample_labels(matches.labels, config.rois_per_image, config.roi_positive_share, rng)
        chosen = np.flatnonzero(labels >= 0)
        chosen = chosen[np.argsort(-labels[chosen], kind="stable")]  # positives first
        positive = labels[chosen] == 1
        chosen_boxes = candidates[chosen]
        matched = matches.gt_index[chosen]
        image_deltas = np.zeros((len(chosen), 4), np.float32)
        image_classes = np.zeros(len(chosen), np.int32)
        if positive.any():
            image_deltas[positive] = encode_boxes(truth[matched[positive]], chosen_boxes[positive])
            image_classes[positive] = truth_classes[matched[positive]]
            masks.append(mask_targets(truth_masks, chosen_boxes[positive], matched[positive], config.mask_size))
        boxes.append(chosen_boxes)
        indices.append(np.full(len(chosen), image, np.int32))
        classes.append(image_classes)
        deltas.append(image_deltas)
    mask_array = np.concatenate(masks) if masks else np.zeros((0, config.mask_size, config.mask_size), np.float32)
    return RoITargets(np.concatenate(boxes), np.concatenate(indices), np.concatenate(classes), np.concatenate(deltas), mask_array)


def mask_targets(masks: np.ndarray, boxes: np.ndarray, object_indices: np.ndarray, size: int) -> np.ndarray:
    """Each object's full-size mask resampled inside a box onto the size x size grid (RoIAlign at stride 1), as 0/1."""
    features = np.asarray(masks, np.float32)[..., None]
    sampled = ops.convert_to_numpy(roi_align(features, boxes, object_indices, size, stride=1.0, sampling_ratio=1))
    return (sampled[..., 0] >= 0.5).astype(np.float32)
