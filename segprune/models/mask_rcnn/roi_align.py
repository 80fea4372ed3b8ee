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
    ones = ops.ones_like(box_indices)
    return _pool(
        ops.reshape(features, (-1, shape[3])),
        boxes,
        base=box_indices * shape[1] * shape[2],
        heights=ones * shape[1],
        widths=ones * shape[2],
        strides=ops.cast(ones, "float32") * stride,
        output_size=output_size,
        sampling_ratio=sampling_ratio,
    )


def _pool(flat, boxes, base, heights, widths, strides, output_size: int, sampling_ratio: int):
    """RoIAlign over a flat (rows, channels) table; box n reads the map of `heights[n] x widths[n]` rows from `base[n]`."""
    scaled = boxes / strides[:, None] - 0.5
    grid = (ops.arange(output_size * sampling_ratio, dtype="float32") + 0.5) / float(output_size * sampling_ratio)
    ys = scaled[:, 0:1] + grid[None, :] * (scaled[:, 2:3] - scaled[:, 0:1])  # (N, S)
    xs = scaled[:, 1:2] + grid[None, :] * (scaled[:, 3:4] - scaled[:, 1:2])
    y_low, y_high, y_weight, y_valid = _axis_samples(ys, heights[:, None])
    x_low, x_high, x_weight, x_valid = _axis_samples(xs, widths[:, None])
    base = base[:, None, None]
    row_width = widths[:, None, None]

    def gather(rows, cols):
        return ops.take(flat, base + rows[:, :, None] * row_width + cols[:, None, :], axis=0)  # (N, S, S, C)

    wy = y_weight[:, :, None, None]
    wx = x_weight[:, None, :, None]
    top = gather(y_low, x_low) * (1.0 - wx) + gather(y_low, x_high) * wx
    bottom = gather(y_high, x_low) * (1.0 - wx) + gather(y_high, x_high) * wx
    sampled = top * (1.0 - wy) + bottom * wy
    valid = ops.cast(y_valid[:, :, None] & x_valid[:, None, :], sampled.dtype)[..., None]
    sampled = sampled * valid
    count, channels = ops.shape(boxes)[0], ops.shape(flat)[1]
    sampled = ops.reshape(sampled, (count, output_size, sampling_ratio, output_size, sampling_ratio, channels))
    return ops.mean(sampled, axis=(2, 4))


def _axis_samples(positions, size):
    """Lower/upper neighbour indices, interpolation weight and validity of sample positions along one axis."""
    size_float = ops.cast(size, "float32")
    valid = (positions >= -1.0) & (positions <= size_float)
    positions = ops.minimum(ops.maximum(positions, 0.0), size_float - 1.0)
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


def multilevel_roi_align(
    features: Sequence,
    boxes,
    box_indices,
    levels: Sequence[int],
    output_size: int,
    canonical_size: float,
    canonical_level: int,
    sampling_ratio: int = 2,
):
    """RoIAlign from the pyramid level each box belongs to; `features[i]` is level `levels[i]` (stride 2**level).

    All levels are laid end to end in one table, so every box is sampled once, from its own level only.
    """
    levels = list(levels)
    if levels != list(range(levels[0], levels[0] + len(levels))):
        raise ValueError(f"Pyramid levels must be consecutive, got {levels}.")
    boxes = ops.cast(ops.convert_to_tensor(boxes), "float32")
    box_indices = ops.cast(ops.convert_to_tensor(box_indices), "int32")
    features = [ops.cast(ops.convert_to_tensor(f), "float32") for f in features]
    shapes = [ops.shape(f) for f in features]
    channels = shapes[0][3]
    flat = ops.concatenate([ops.reshape(f, (-1, channels)) for f in features], axis=0)
    sizes = [s[0] * s[1] * s[2] for s in shapes]
    starts = ops.convert_to_tensor([sum(sizes[:i]) for i in range(len(sizes))], "int32")
    heights_table = ops.convert_to_tensor([s[1] for s in shapes], "int32")
    widths_table = ops.convert_to_tensor([s[2] for s in shapes], "int32")
    position = pyramid_levels(boxes, levels, canonical_size, canonical_level) - levels[0]
    heights, widths = ops.take(heights_table, position), ops.take(widths_table, position)
    strides = ops.power(2.0, ops.cast(position + levels[0], "float32"))
    base = ops.take(starts, position) + box_indices * heights * widths
    return _pool(flat, boxes, base, heights, widths, strides, output_size, sampling_ratio)
