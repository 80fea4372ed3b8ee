"""RoIAlign (He et al., 2017) on keras.ops: bilinear samples averaged per output bin, and the pyramid level per box.

Coordinates follow the "aligned" convention (Detectron2's `aligned=True`): a box in pixel-edge image
coordinates is scaled by `1 / stride` and shifted by half a feature cell, so that a box exactly covering
feature cells samples their centres. Samples more than one cell outside the map read zero; samples between
the border and one cell outside read the border value (as torchvision and Caffe2 do).
"""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops


def roi_align(features, boxes, box_indices, output_size: int, stride: float, sampling_ratio: int = 2):
    """Pools a fixed-size feature patch per box.

    Args:
        features: (batch, height, width, channels) feature map.
        boxes: (N, 4) float boxes `(y1, x1, y2, x2)` in image pixels.
        box_indices: (N,) int, which image of the batch each box belongs to.
        output_size: Side of the square output patch.
        stride: Image pixels per feature cell (4 for P2).
        sampling_ratio: Bilinear samples per bin along each axis.

    Returns:
        (N, output_size, output_size, channels) pooled features.

    Example:
        >>> patches = roi_align(p2, boxes, ops.zeros((len(boxes),), "int32"), output_size=7, stride=4)
    """
    features = ops.cast(ops.convert_to_tensor(features), "float32")
    boxes = ops.cast(ops.convert_to_tensor(boxes), "float32")
    box_indices = ops.cast(ops.convert_to_tensor(box_indices), "int32")
    shape = ops.shape(features)
    height, width, channels = shape[1], shape[2], shape[3]
    scaled = boxes / stride - 0.5
    grid = (ops.arange(output_size * sampling_ratio, dtype="float32") + 0.5) / float(output_size * sampling_ratio)
    ys = scaled[:, 0:1] + grid[None, :] * (scaled[:, 2:3] - scaled[:, 0:1])  # (N, S)
    xs = scaled[:, 1:2] + grid[None, :] * (scaled[:, 3:4] - scaled[:, 1:2])
    y_low, y_high, y_weight, y_valid = _axis_samples(ys, height)
    x_low, x_high, x_weight, x_valid = _axis_samples(xs, width)

    flat = ops.reshape(features, (-1, channels))
    base = (box_indices * height * width)[:, None, None]  # (N, 1, 1)

    def gather(rows, cols):
        index = base + rows[:, :, None] * width + cols[:, None, :]  # (N, S, S)
        return ops.take(flat, index, axis=0)  # (N, S, S, C)

    wy = y_weight[:, :, None, None]
    wx = x_weight[:, None, :, None]
    top = gather(y_low, x_low) * (1.0 - wx) + gather(y_low, x_high) * wx
    bottom = gather(y_high, x_low) * (1.0 - wx) + gather(y_high, x_high) * wx
    sampled = top * (1.0 - wy) + bottom * wy
    valid = ops.cast(y_valid[:, :, None] & x_valid[:, None, :], sampled.dtype)[..., None]
    sampled = sampled * valid
    count = ops.shape(boxes)[0]
    sampled = ops.reshape(sampled, (count, output_size, sampling_ratio, output_size, sampling_ratio, channels))
    return ops.mean(sampled, axis=(2, 4))


def _axis_samples(positions, size):
    """Lower/upper neighbour indices, interpolation weight and validity of sample positions along one axis."""
    size_float = ops.cast(size, "float32")
    valid = (positions >= -1.0) & (positions <= size_float)
    positions = ops.clip(positions, 0.0, size_float - 1.0)
    low = ops.floor(positions)
    weight = positions - low
    low = ops.cast(low, "int32")
    high = ops.minimum(low + 1, size - 1)
    return low, high, weight, valid


def pyramid_levels(boxes, levels: Sequence[int], canonical_size: float, canonical_level: int):
    """The pyramid level each box is pooled from (FPN paper, eq. 1), clipped to `levels`: (N,) int32."""
    boxes = ops.convert_to_tensor(boxes, "float32")
    side = ops.sqrt(ops.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6))
    level = ops.floor(canonical_level + ops.log2(side / canonical_size))
    return ops.cast(ops.clip(level, min(levels), max(levels)), "int32")


def multilevel_roi_align(features: Sequence, boxes, box_indices, levels: Sequence[int], output_size: int, canonical_size: float, canonical_level: int):
    """RoIAlign from the pyramid level each box belongs to; `features[i]` is level `levels[i]` (stride 2**level)."""
    assigned = pyramid_levels(boxes, levels, canonical_size, canonical_level)
    pooled = None
    for level, feature in zip(levels, features):
        patches = roi_align(feature, boxes, box_indices, output_size, stride=2.0**level)
        chosen = ops.cast(ops.equal(assigned, level), patches.dtype)[:, None, None, None]
        pooled = patches * chosen if pooled is None else pooled + patches * chosen
    return pooled
