"""Instance segmentation metrics: COCO mask AP (through pycocotools) and the 2018 Data Science Bowl score.

Ground truth is a list of `segprune.data.instances.Instances`; predictions are any objects with `masks`
(bool (N, H, W)), `scores` (N,) and `class_ids` (N,) attributes, such as the detector's `Detections`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segprune.data.instances import InstanceDataset, Instances

# Mask AP ranks detections down to this score (COCO practice); the DSB score takes the detector's own threshold.
AP_MIN_SCORE = 0.05

# IoU thresholds 0.5, 0.55, ..., 0.95 (the COCO ones, which the DSB score shares), rounded so that 0.8 is 0.8.
IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)


class InstancePrediction(Protocol):
    masks: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


class InstanceDetector(Protocol):
    def detect(self, images, min_score: float | None = None) -> list[InstancePrediction]: ...


def evaluate_instances(detector: InstanceDetector, data: InstanceDataset, split: str = "test", batch_size: int = 8) -> dict[str, float]:
    """Mask AP, AP50, AP75 (detections down to score 0.05) and the DSB score (default detections) over a split.

    Returns:
        `{"ap", "ap50", "ap75", "dsb", "detections_per_image", "objects_per_image", "num_images"}`.

    Example:
        >>> evaluate_instances(model, instance_dataset("nuclei-dsb2018"), "test")["ap50"]
    """
    truths, ranked, detected = [], [], []
    ids = data.ids(split)
    for start in range(0, len(ids), batch_size):
        images, batch_truths = zip(*(data.load(sample_id) for sample_id in ids[start : start + batch_size]))
        # images of one size go through together, others one by one
        batches = [np.stack(images)] if len({image.shape for image in images}) == 1 else [image[None] for image in images]
        truths.extend(batch_truths)
        for batch in batches:
            ranked.extend(detector.detect(batch, min_score=AP_MIN_SCORE))
            detected.extend(detector.detect(batch))
    return {
        **mask_ap(truths, ranked),
        "dsb": mean_dsb_score(truths, detected),
        "detections_per_image": float(np.mean([len(d.scores) for d in detected])),
        "objects_per_image": float(np.mean([len(t) for t in truths])),
        "num_images": len(truths),
    }


def mask_ap(truths: Sequence[Instances], predictions: Sequence[InstancePrediction], max_detections: int = 100) -> dict[str, float]:
    """COCO-style mask AP, AP50 and AP75 over a set of images (pycocotools' matching, not a re-implementation).

    Args:
        truths: Ground truth per image.
        predictions: Predictions per image, in the same order.
        max_detections: Detections per image that count (COCO's last maxDets).

    An image with neither objects nor detections is skipped; detections on an image without objects are false
    positives. With no objects in any image there is no recall to rank: the score is 1 when nothing was
    detected either (every image skipped, nothing wrong) and 0 when anything was (every detection false).

    Returns:
        `{"ap": ..., "ap50": ..., "ap75": ...}`; 0 where there are objects but no predictions.

    Example:
        >>> mask_ap([instances], [detections])["ap50"]
    """
    if len(truths) != len(predictions):
        raise ValueError(f"Got {len(truths)} ground-truth images but {len(predictions)} predictions; give one per image.")
    categories = sorted({int(c) for truth in truths for c in truth.class_ids} | {int(c) for p in predictions for c in p.class_ids})
    images, annotations, results = [], [], []
    for image_id, (truth, prediction) in enumerate(zip(truths, predictions), start=1):
        height, width = truth.image_shape
        images.append({"id": image_id, "height": int(height), "width": int(width)})
        for mask, class_id in zip(truth.masks, truth.class_ids):
            rle = _encode(mask)
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(class_id), "segmentation": rle,
                 "area": float(coco_mask.area(rle)), "bbox": list(coco_mask.toBbox(rle)), "iscrowd": 0}
            )
        for mask, score, class_id in zip(prediction.masks, prediction.scores, prediction.class_ids):
            results.append({"image_id": image_id, "category_id": int(class_id), "segmentation": _encode(mask), "score": float(score)})
    if not annotations or not results:  # pycocotools needs both; see the docstring for what each case scores
        value = 1.0 if not annotations and not results else 0.0
        return {"ap": value, "ap50": value, "ap75": value}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in categories]}
        ground_truth.createIndex()
        detections = ground_truth.loadRes(results)
        evaluation = COCOeval(ground_truth, detections, iouType="segm")
        evaluation.params.maxDets = [1, 10, max_detections]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [max(0.0, float(value)) for value in evaluation.stats[:3]]  # -1 means "no objects of that kind"
    return {"ap": stats[0], "ap50": stats[1], "ap75": stats[2]}


def _encode(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def label_image(masks: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """Instance masks painted into one int32 label image (ids 1..N); where masks overlap, the higher score wins.

    Example:
        >>> label_image(detections.masks, detections.scores).max()
    """
    masks = np.asarray(masks, dtype=bool)
    labels = np.zeros(masks.shape[1:], dtype=np.int32)
    order = np.arange(len(masks)) if scores is None else np.argsort(-np.asarray(scores), kind="stable")
    for object_id, index in enumerate(order, start=1):
        labels[masks[index] & (labels == 0)] = object_id
    return labels


def dsb_score(true_labels: np.ndarray, predicted_labels: np.ndarray) -> float:
    """The 2018 Data Science Bowl score of one image: mean over IoU thresholds 0.5..0.95 of TP / (TP + FP + FN).

    A predicted object is a true positive at threshold t when its IoU with a true object is above t (at t >= 0.5
    a match is one-to-one). Both label images hold one id per object, 0 = background. An image with no true and
    no predicted objects scores 1.

    Example:
        >>> dsb_score(truth, truth)
        1.0
    """
    true_labels, predicted_labels = np.asarray(true_labels), np.asarray(predicted_labels)
    if true_labels.shape != predicted_labels.shape:
        raise ValueError(f"Label images differ in size: {true_labels.shape} (truth) vs {predicted_labels.shape} (prediction).")
    true_ids = np.unique(true_labels)
    true_ids = true_ids[true_ids > 0]
    predicted_ids = np.unique(predicted_labels)
    predicted_ids = predicted_ids[predicted_ids > 0]
    if len(true_ids) == 0 and len(predicted_ids) == 0:
        return 1.0
    if len(true_ids) == 0 or len(predicted_ids) == 0:
        return 0.0
    true_index = np.searchsorted(true_ids, true_labels) + 1
    true_index[true_labels == 0] = 0
    predicted_index = np.searchsorted(predicted_ids, predicted_labels) + 1
    predicted_index[predicted_labels == 0] = 0
    joint = np.zeros((len(true_ids) + 1, len(predicted_ids) + 1), dtype=np.int64)
    np.add.at(joint, (true_index.ravel(), predicted_index.ravel()), 1)
    intersection = joint[1:, 1:]
    union = joint[1:, :].sum(axis=1)[:, None] + joint[:, 1:].sum(axis=0)[None, :] - intersection
    iou = intersection / union
    scores = []
    for threshold in IOU_THRESHOLDS:
        hits = iou > threshold
        true_positives = int(hits.sum())
        false_positives = len(predicted_ids) - int(hits.any(axis=0).sum())
        false_negatives = len(true_ids) - int(hits.any(axis=1).sum())
        scores.append(true_positives / (true_positives + false_positives + false_negatives))
    return float(np.mean(scores))


def mean_dsb_score(truths: Sequence[Instances], predictions: Sequence[InstancePrediction]) -> float:
    """The DSB score averaged over images; overlapping predicted masks are resolved by score first."""
    if len(truths) != len(predictions):
        raise ValueError(f"Got {len(truths)} ground-truth images but {len(predictions)} predictions; give one per image.")
    scores = [
        dsb_score(label_image(truth.masks), label_image(prediction.masks, prediction.scores))
        for truth, prediction in zip(truths, predictions)
    ]
    return float(np.mean(scores))
