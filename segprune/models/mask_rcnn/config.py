"""The settings of a Mask R-CNN: network widths, anchors, and the sampling and detection thresholds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segprune.models.mask_rcnn.boxes import level_anchors


@dataclass(frozen=True)
class MaskRCNNConfig:
    """Defaults suit 128-256 px fluorescence tiles with 5-40 px nuclei on a CPU.

    Attributes:
        num_classes: Classes including background (2 for one kind of object).
        input_channels: Image channels.
        encoder_filters: Filters of the stem and of the three stages ending at strides 4, 8 and 16.
        fpn_filters: Channels of every pyramid level (P2-P4) and of the shared RPN convolution.
        anchor_sizes: Anchor side per pyramid level (P2, P3, P4), in pixels.
        aspect_ratios: Width/height ratios of the anchors at every position.
        box_head_units: Units of the box head's two dense layers.
        mask_head_filters: Filters of the mask head's convolutions.
        mask_head_convs: Number of 3x3 convolutions in the mask head before its 2x upsampling.
        pool_size: RoIAlign output for the box head (7); the mask head pools twice as large and predicts 4x.
        canonical_size: A box of this side is pooled from P4; each halving moves one level down (FPN eq. 1).
        rpn_positive_iou, rpn_negative_iou: Anchor matching thresholds (each object's best anchor is positive too).
        rpn_samples: Anchors per image in the RPN loss, at most half of them positive.
        pre_nms, post_nms_train, post_nms_test: Proposals kept before and after the RPN's NMS.
        rpn_nms_iou: IoU threshold of that NMS.
        rois_per_image: Proposals per image sampled for the heads' losses, `roi_positive_share` of them positive.
        roi_positive_iou: Proposals overlapping an object by this much are positive for the heads.
        detection_min_score, detection_nms_iou, max_detections: Final detections (per class NMS).
        mask_threshold: Mask probability above which a pixel belongs to the object.
    """

    num_classes: int = 2
    input_channels: int = 1
    encoder_filters: tuple[int, ...] = (16, 32, 64, 128)
    fpn_filters: int = 64
    anchor_sizes: tuple[float, ...] = (8.0, 16.0, 32.0)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    box_head_units: int = 256
    mask_head_filters: int = 64
    mask_head_convs: int = 4
    pool_size: int = 7
    canonical_size: float = 32.0
    rpn_positive_iou: float = 0.6
    rpn_negative_iou: float = 0.3
    rpn_samples: int = 256
    pre_nms: int = 1000
    post_nms_train: int = 300
    post_nms_test: int = 300
    rpn_nms_iou: float = 0.7
    rois_per_image: int = 64
    roi_positive_share: float = 0.25
    roi_positive_iou: float = 0.5
    detection_min_score: float = 0.5
    detection_nms_iou: float = 0.3
    max_detections: int = 100
    mask_threshold: float = 0.5

    levels = (2, 3, 4)

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2 (background counts as a class), got {self.num_classes!r}.")
        if len(self.encoder_filters) != 4:
            raise ValueError(f"encoder_filters needs 4 widths (stem, stride 4, 8, 16), got {self.encoder_filters!r}.")
        if len(self.anchor_sizes) != len(self.levels):
            raise ValueError(f"anchor_sizes needs one size per level {self.levels}, got {self.anchor_sizes!r}.")

    @property
    def anchors_per_position(self) -> int:
        return len(self.aspect_ratios)

    @property
    def mask_pool_size(self) -> int:
        return 2 * self.pool_size

    @property
    def mask_size(self) -> int:
        return 4 * self.pool_size

    @property
    def size_multiple(self) -> int:
        return 2 ** max(self.levels)

    def anchors(self, image_shape: tuple[int, int]) -> np.ndarray:
        """All anchors of an image, level by level in the order of the RPN outputs."""
        return np.concatenate(
            [level_anchors(image_shape, 2**level, [size], self.aspect_ratios) for level, size in zip(self.levels, self.anchor_sizes)]
        )
