"""Mask R-CNN with an FPN on Keras 3, sized for small fluorescence tiles (nuclei) and trained from scratch."""

from segprune.models.mask_rcnn.config import MaskRCNNConfig
from segprune.models.mask_rcnn.model import Detections, MaskRCNN
from segprune.models.mask_rcnn.saving import is_mask_rcnn_file, load_mask_rcnn, save_mask_rcnn
from segprune.models.mask_rcnn.training import FitResult, fit_mask_rcnn, train_mask_rcnn


def mask_rcnn(num_classes: int = 2, input_channels: int = 1, **options) -> MaskRCNN:
    """Builds a randomly initialised Mask R-CNN (encoder of our conv blocks, FPN P2-P4, shared RPN head, heads).

    Args:
        num_classes: Classes including background.
        input_channels: Image channels.
        **options: Any other `MaskRCNNConfig` field (widths, anchors, thresholds).

    Example:
        >>> model = mask_rcnn(num_classes=2, input_channels=1, fpn_filters=32)
        >>> len(model.trunk.outputs)
        9
    """
    return MaskRCNN(MaskRCNNConfig(num_classes=num_classes, input_channels=input_channels, **options))


__all__ = ["Detections", "FitResult", "MaskRCNN", "MaskRCNNConfig", "fit_mask_rcnn", "is_mask_rcnn_file", "load_mask_rcnn", "mask_rcnn", "save_mask_rcnn", "train_mask_rcnn"]
