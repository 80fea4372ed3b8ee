"""Mask R-CNN (He et al., 2017) with an FPN: the trunk and heads, their losses, and detection.

`MaskRCNN` holds three plain functional Keras models (trunk, box head, mask head) and the Python between
them: anchor decoding, NMS (the TensorFlow backend's op), RoIAlign (keras.ops), and pasting masks back
into the image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops
from scipy import ndimage

from segprune.data.instances import Instances
from segprune.models.mask_rcnn.boxes import clip_boxes, decode_boxes
from segprune.models.mask_rcnn.config import MaskRCNNConfig
from segprune.models.mask_rcnn.losses import head_losses, rpn_losses
from segprune.models.mask_rcnn.networks import build_box_head, build_mask_head, build_trunk
from segprune.models.mask_rcnn.proposals import non_max_suppression, propose
from segprune.models.mask_rcnn.roi_align import multilevel_roi_align
from segprune.models.mask_rcnn.targets import roi_targets, rpn_targets


@dataclass(frozen=True)
class Detections:
    """The objects found in one image.

    Attributes:
        boxes: float32 (N, 4) `(y1, x1, y2, x2)` in pixels.
        scores: float32 (N,) class probabilities, best first.
        class_ids: int32 (N,), each >= 1.
        masks: bool (N, height, width) full-size masks.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@keras.saving.register_keras_serializable(package="segprune")
class MaskRCNN(keras.Model):
    """A Mask R-CNN: `trunk` (encoder, FPN, shared RPN head), `box_head` and `mask_head`, and the steps between.

    It saves as one `.keras` file holding the three functional models and the config; loading it needs this
    class registered, which importing `segprune.models.mask_rcnn` does. Calling the model runs the trunk.

    Example:
        >>> model = MaskRCNN(MaskRCNNConfig(num_classes=2))
        >>> detections = model.detect(images)  # one Detections per image
    """

    def __init__(
        self,
        config: MaskRCNNConfig | dict,
        trunk: keras.Model | None = None,
        box_head: keras.Model | None = None,
        mask_head: keras.Model | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("name", "mask_rcnn")
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = MaskRCNNConfig(**{key: tuple(value) if isinstance(value, list) else value for key, value in config.items()})
        self.config = config
        self.trunk = trunk if trunk is not None else build_trunk(config)
        self.box_head = box_head if box_head is not None else build_box_head(config)
        self.mask_head = mask_head if mask_head is not None else build_mask_head(config)
        self.built = True  # the three functional models are built on construction

    def call(self, images, training=None):
        return self.trunk(images, training=training)

    def count_params(self) -> int:
        return self.trunk.count_params() + self.box_head.count_params() + self.mask_head.count_params()

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "config": dataclasses.asdict(self.config),
            "trunk": keras.saving.serialize_keras_object(self.trunk),
            "box_head": keras.saving.serialize_keras_object(self.box_head),
            "mask_head": keras.saving.serialize_keras_object(self.mask_head),
        }

    @classmethod
    def from_config(cls, config: dict) -> MaskRCNN:
        config = dict(config)
        for key in ("trunk", "box_head", "mask_head"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def _check_images(self, images) -> np.ndarray:
        images = np.asarray(images, np.float32)
        multiple = self.config.size_multiple
        if images.ndim != 4 or images.shape[-1] != self.config.input_channels:
            raise ValueError(
                f"Mask R-CNN takes a batch (batch, height, width, {self.config.input_channels}); got shape {images.shape}."
            )
        if images.shape[1] % multiple or images.shape[2] % multiple:
            raise ValueError(f"Image height and width must be multiples of {multiple}; got {images.shape[1]}x{images.shape[2]}. Pad the images.")
        return images

    def _forward(self, images, training: bool):
        outputs = self.trunk(images, training=training)
        count = len(self.config.levels)
        features = outputs[:count]
        batch = ops.shape(images)[0]
        logits = ops.concatenate([ops.reshape(x, (batch, -1)) for x in outputs[count : 2 * count]], axis=1)
        deltas = ops.concatenate([ops.reshape(x, (batch, -1, 4)) for x in outputs[2 * count :]], axis=1)
        return features, logits, deltas

    def _pool(self, features, boxes, image_indices, size: int):
        levels = self.config.levels
        return multilevel_roi_align(features, boxes, image_indices, levels, size, self.config.canonical_size, max(levels))

    def training_losses(self, images, truths: Sequence[Instances], rng: np.random.Generator) -> dict:
        """The five training losses of a batch (scalar tensors): rpn_objectness, rpn_box, classifier, box, mask."""
        images = self._check_images(images)
        config = self.config
        image_shape = images.shape[1:3]
        anchors = config.anchors(image_shape)
        gt_boxes = [truth.boxes for truth in truths]
        targets = rpn_targets(anchors, gt_boxes, config, rng)
        features, logits, deltas = self._forward(images, training=True)
        rpn_objectness, rpn_box = rpn_losses(logits, deltas, targets.labels, targets.deltas)
        proposals = propose(
            ops.stop_gradient(logits), ops.stop_gradient(deltas), anchors, image_shape, config.pre_nms, config.post_nms_train, config.rpn_nms_iou
        )
        rois = roi_targets(proposals, gt_boxes, [t.class_ids for t in truths], [t.masks for t in truths], config, rng)
        class_logits, box_deltas = self.box_head(self._pool(features, rois.boxes, rois.image_indices, config.pool_size), training=True)
        positive = rois.positive
        mask_logits = None
        if positive.any():
            pooled = self._pool(features, rois.boxes[positive], rois.image_indices[positive], config.mask_pool_size)
            mask_logits = self.mask_head(pooled, training=True)
        classifier, box, mask = head_losses(class_logits, box_deltas, mask_logits, rois.class_ids, rois.deltas, rois.masks)
        return {"rpn_objectness": rpn_objectness, "rpn_box": rpn_box, "classifier": classifier, "box": box, "mask": mask}

    def detect(self, images, min_score: float | None = None) -> list[Detections]:
        """Detections per image: boxes, scores, classes and full-size masks (inference mode).

        Args:
            images: float32 (batch, height, width, channels), sides multiples of `config.size_multiple`.
            min_score: Class probability a detection needs; `config.detection_min_score` when None (mask AP
                is measured with low-scoring detections too, COCO practice).
        """
        images = self._check_images(images)
        config = self.config if min_score is None else dataclasses.replace(self.config, detection_min_score=float(min_score))
        image_shape = images.shape[1:3]
        features, logits, deltas = self._forward(images, training=False)
        proposals = propose(logits, deltas, config.anchors(image_shape), image_shape, config.pre_nms, config.post_nms_test, config.rpn_nms_iou)
        boxes = np.concatenate(proposals)
        indices = np.concatenate([np.full(len(p), i, np.int32) for i, p in enumerate(proposals)])
        if len(boxes) == 0:
            return [self._empty(image_shape) for _ in proposals]
        class_logits, box_deltas = self.box_head(self._pool(features, boxes, indices, config.pool_size), training=False)
        probabilities = ops.convert_to_numpy(ops.softmax(class_logits, axis=-1))
        box_deltas = ops.convert_to_numpy(box_deltas).reshape(len(boxes), config.num_classes, 4)
        chosen = [self._select(boxes[indices == i], probabilities[indices == i], box_deltas[indices == i], image_shape, config) for i in range(len(images))]
        all_boxes = np.concatenate([c[0] for c in chosen])
        if len(all_boxes) == 0:
            return [self._empty(image_shape) for _ in proposals]
        all_indices = np.concatenate([np.full(len(c[0]), i, np.int32) for i, c in enumerate(chosen)])
        mask_logits = self.mask_head(self._pool(features, all_boxes, all_indices, config.mask_pool_size), training=False)
        mask_probabilities = ops.convert_to_numpy(ops.sigmoid(mask_logits))
        all_classes = np.concatenate([c[2] for c in chosen])
        small_masks = mask_probabilities[np.arange(len(all_boxes)), :, :, all_classes]
        detections = []
        for i, (image_boxes, scores, classes) in enumerate(chosen):
            masks = np.stack([paste_mask(m, b, image_shape, config.mask_threshold) for m, b in zip(small_masks[all_indices == i], image_boxes)]) if len(image_boxes) else np.zeros((0, *image_shape), bool)
            detections.append(Detections(image_boxes, scores, classes, masks))
        return detections

    def _select(self, proposals, probabilities, deltas, image_shape, config: MaskRCNNConfig):
        """Per-class refinement, score threshold and NMS; the best `max_detections` over all classes."""
        boxes, scores, classes = [], [], []
        for class_id in range(1, config.num_classes):
            class_scores = probabilities[:, class_id]
            keep = class_scores >= config.detection_min_score
            if not keep.any():
                continue
            refined = ops.convert_to_numpy(clip_boxes(decode_boxes(deltas[keep, class_id], proposals[keep]), image_shape))
            kept = ops.convert_to_numpy(non_max_suppression(refined, class_scores[keep], config.max_detections, config.detection_nms_iou))
            boxes.append(refined[kept])
            scores.append(class_scores[keep][kept])
            classes.append(np.full(len(kept), class_id, np.int32))
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
        boxes, scores, classes = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
        order = np.argsort(-scores, kind="stable")[: config.max_detections]
        return boxes[order].astype(np.float32), scores[order].astype(np.float32), classes[order]

    @staticmethod
    def _empty(image_shape) -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros((0, *image_shape), bool))


def paste_mask(mask: np.ndarray, box: np.ndarray, image_shape: tuple[int, int], threshold: float) -> np.ndarray:
    """A box-relative mask probability grid (S x S) resampled bilinearly at the image's pixel centres inside the box."""
    size = mask.shape[0]
    y1, x1, y2, x2 = (float(v) for v in box)
    full = np.zeros(image_shape, bool)
    top, left = max(int(np.floor(y1)), 0), max(int(np.floor(x1)), 0)
    bottom, right = min(int(np.ceil(y2)), image_shape[0]), min(int(np.ceil(x2)), image_shape[1])
    if bottom <= top or right <= left:
        return full
    rows = (np.arange(top, bottom) + 0.5 - y1) / max(y2 - y1, 1e-6) * size - 0.5
    cols = (np.arange(left, right) + 0.5 - x1) / max(x2 - x1, 1e-6) * size - 0.5
    grid_rows, grid_cols = np.meshgrid(rows, cols, indexing="ij")
    values = ndimage.map_coordinates(mask.astype(np.float32), [grid_rows, grid_cols], order=1, mode="nearest")
    inside = (grid_rows >= -0.5) & (grid_rows <= size - 0.5) & (grid_cols >= -0.5) & (grid_cols <= size - 0.5)
    full[top:bottom, left:right] = (values >= threshold) & inside
    return full
