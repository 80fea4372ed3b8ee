"""From RPN outputs to proposals: decode anchors' deltas, keep the top scores, non-maximum suppression.

NMS has no `keras.ops` form, so `non_max_suppression` calls the TensorFlow backend's
`tf.image.non_max_suppression` (the one backend-specific operation of the detector; ONNX has an equivalent).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from segprune.models.mask_rcnn.boxes import clip_boxes, decode_boxes


def non_max_suppression(boxes, scores, max_outputs: int, iou_threshold: float, score_threshold: float = float("-inf")):
    """Indices of the boxes kept by greedy NMS, best score first (TensorFlow backend op)."""
    import tensorflow as tf  # imported when used: segprune itself imports under every backend

    return tf.image.non_max_suppression(
        ops.convert_to_tensor(boxes, "float32"),
        ops.convert_to_tensor(scores, "float32"),
        max_output_size=max_outputs,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
    )


def propose(
    objectness_logits,
    deltas,
    anchors: np.ndarray,
    image_shape: tuple[int, int],
    pre_nms: int,
    post_nms: int,
    iou_threshold: float,
    min_size: float = 1.0,
) -> list[np.ndarray]:
    """Proposals per image from RPN outputs.

    Args:
        objectness_logits: (batch, A) logits over all anchors of all levels.
        deltas: (batch, A, 4) box deltas.
        anchors: (A, 4) anchors in the same order.
        image_shape: (height, width) to clip to.
        pre_nms: Best-scored anchors kept before NMS.
        post_nms: Proposals kept after NMS.
        iou_threshold: NMS overlap threshold.
        min_size: Proposals thinner than this (pixels) are dropped.

    Returns:
        One float32 (n, 4) array of boxes per image, best first.
    """
    logits = ops.convert_to_numpy(objectness_logits)
    deltas = ops.convert_to_numpy(deltas)
    results = []
    for image_logits, image_deltas in zip(logits, deltas):
        top = np.argsort(-image_logits)[: min(pre_nms, len(image_logits))]
        boxes = ops.convert_to_numpy(clip_boxes(decode_boxes(image_deltas[top], anchors[top]), image_shape))
        scores = image_logits[top]
        big = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
        boxes, scores = boxes[big], scores[big]
        keep = ops.convert_to_numpy(non_max_suppression(boxes, scores, post_nms, iou_threshold))
        results.append(boxes[keep].astype(np.float32))
    return results
