"""Settings and small objects that several test modules share (the pytest fixtures themselves are in conftest.py)."""

import numpy as np

from segprune.data.instances import InstanceDataset, instances_from_labels

# The smallest Mask R-CNN that still trains and detects on a 64x64 tile: `mask_rcnn(**TINY)`.
TINY_MASK_RCNN = dict(
    encoder_filters=(4, 8, 8, 8),
    fpn_filters=8,
    box_head_units=16,
    mask_head_filters=8,
    mask_head_convs=1,
    pool_size=4,
    pre_nms=200,
    post_nms_train=50,
    post_nms_test=50,
    rois_per_image=16,
    rpn_samples=64,
)

# A Mask R-CNN a search can narrow at round_to=4: only the FPN laterals and the shared RPN convolution (16 channels
# each) can, so a search has a few candidates, each a real detector that detects at every score.
TINY_DETECTOR = {**TINY_MASK_RCNN, "encoder_filters": (4, 4, 4, 4), "fpn_filters": 16, "detection_min_score": 0.0, "max_detections": 5}


def instance_tiles() -> InstanceDataset:
    """Two 64x64 tiles with two bright objects each: "a" trains and validates, "b" tests."""
    labels = np.zeros((64, 64), np.uint16)
    labels[8:20, 10:22] = 1
    labels[36:46, 30:44] = 2
    image = np.where(labels > 0, 0.8, 0.1).astype(np.float32)[..., None]
    instances = instances_from_labels(labels)
    return InstanceDataset("tiles", 2, 1, {"train": ["a", "b"], "val": ["a"], "test": ["b"]}, lambda _: (image, instances))


def one_error(captured: str) -> str:
    """The printed error as one string (the console wraps long lines at 160 columns when not a terminal)."""
    assert captured.startswith("error:") and "Traceback" not in captured
    return " ".join(captured.split())
