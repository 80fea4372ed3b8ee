"""Settings and small objects that several test modules share (the pytest fixtures themselves are in conftest.py)."""

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
