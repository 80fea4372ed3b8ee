"""The whole Mask R-CNN as one TensorFlow graph: image in; boxes, scores, classes and full-size masks out, padded.

`MaskRCNN.detect` runs the trunk and heads as Keras models and the steps between them in Python and NumPy.
`detection_function` writes those steps as graph operations, so that one exported file (ONNX, OpenVINO IR)
holds the whole detector and a runtime times what a user runs:

- proposals: top-k objectness per image, anchor decoding, the small-box filter, and NMS
  (`tf.image.non_max_suppression`, which tf2onnx writes as ONNX NonMaxSuppression and OpenVINO reads as
  its own NMS);
- RoIAlign from the pyramid level of each box (`multilevel_roi_align`'s samples and weights, written as
  matrix products on a window of each box's own level: `separable_roi_align`), the box head on every proposal, per-class refinement, score
  threshold and NMS, the best `max_detections`;
- the mask head on the detections only, and mask pasting: each box-relative mask resampled bilinearly at the
  image's pixel centres inside its box (`paste_mask`) as two small matrix products per detection.

Every image has its own number of detections; the outputs hold `max_detections` rows per image, the first
`num_detections` of them real (best score first) and the rest zero. The batch size is fixed when the function
is traced (one graph per image of the batch, side by side); height and width too, since the anchors are
constants of the graph.

NMS has no keras.ops form (`proposals.non_max_suppression` calls TensorFlow's too), so this graph needs the
TensorFlow backend; the runtime's export machinery converts it (`segprune.runtime.detector_export`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from keras import ops

from segprune.backend.capabilities import require_backend
from segprune.models.mask_rcnn.boxes import clip_boxes, decode_boxes
from segprune.models.mask_rcnn.config import MaskRCNNConfig
from segprune.models.mask_rcnn.model import Detections, MaskRCNN
from segprune.models.mask_rcnn.roi_align import pyramid_levels

OUTPUT_NAMES = ("boxes", "scores", "class_ids", "masks", "num_detections")
MIN_PROPOSAL_SIZE = 1.0  # as `propose`: proposals thinner than a pixel are dropped


@dataclass(frozen=True)
class DetectorShape:
    """The fixed input a whole-detector graph is traced for: (batch, height, width, channels)."""

    batch: int
    height: int
    width: int
    channels: int

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.batch, self.height, self.width, self.channels)


def detector_shape(model: MaskRCNN, input_shape: Sequence[int]) -> DetectorShape:
    """Checks a fixed input shape, `(height, width)`, `(batch, height, width)` or `(batch, height, width, channels)`.

    Example:
        >>> detector_shape(model, (1, 128, 128)).as_tuple()
        (1, 128, 128, 1)
    """
    shape = tuple(int(value) for value in input_shape)
    channels = model.config.input_channels
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) == 3:
        shape = (*shape, channels)
    multiple = model.config.size_multiple
    if len(shape) != 4 or min(shape) < 1 or shape[3] != channels:
        raise ValueError(f"A whole Mask R-CNN is exported at a fixed (batch, height, width, {channels}); got {tuple(input_shape)}.")
    if shape[1] % multiple or shape[2] % multiple:
        raise ValueError(f"Height and width must be multiples of {multiple} for this Mask R-CNN; got {shape[1]}x{shape[2]}. Pad the images.")
    return DetectorShape(*shape)


def detection_function(model: MaskRCNN, input_shape: Sequence[int], min_score: float | None = None):
    """A `tf.function` running the whole detector on float32 images of a fixed shape, and its input signature.

    Args:
        model: The detector.
        input_shape: Fixed `(batch, height, width[, channels])`, sides multiples of `config.size_multiple`.
        min_score: Class probability a detection needs; `config.detection_min_score` when None.

    Returns:
        `(function, signature)`; the function returns a dict of `boxes` (B, M, 4) float32, `scores` (B, M)
        float32, `class_ids` (B, M) int32, `masks` (B, M, H, W) uint8 0/1 and `num_detections` (B,) int32, with
        M = `config.max_detections` (an exported file names its outputs so).

    Example:
        >>> function, signature = detection_function(model, (1, 128, 128))
        >>> detections = detections_from_outputs(function(images))
    """
    require_backend("The whole Mask R-CNN graph (NMS is a TensorFlow operation)", ("tensorflow",))
    import tensorflow as tf

    shape = detector_shape(model, input_shape)
    config = model.config if min_score is None else dataclasses.replace(model.config, detection_min_score=float(min_score))
    anchors = config.anchors(shape.image_shape)
    signature = [tf.TensorSpec(shape.as_tuple(), tf.float32, name="images")]

    def detect(images):
        return _detect_graph(model, config, shape, anchors, images)

    return tf.function(detect, input_signature=signature, autograph=False), signature


def _detect_graph(model: MaskRCNN, config: MaskRCNNConfig, shape: DetectorShape, anchors: np.ndarray, images):
    import tensorflow as tf

    with tf.name_scope("trunk"):  # the scopes name the graph's parts in a runtime's profile
        features, logits, deltas = model._forward(images, training=False)
    with tf.name_scope("proposals"):
        proposals = [_proposals(logits[b], deltas[b], anchors, shape.image_shape, config) for b in range(shape.batch)]
    proposal_images = tf.concat([tf.fill(tf.shape(p)[:1], b) for b, p in enumerate(proposals)], axis=0)
    all_proposals = tf.concat(proposals, axis=0)
    class_logits, box_deltas = _box_head(model, features, all_proposals, proposal_images, config)
    probabilities = tf.nn.softmax(class_logits, axis=-1)
    box_deltas = tf.reshape(box_deltas, (-1, config.num_classes, 4))
    with tf.name_scope("select"):
        chosen = [
            _select(
                proposals[b], tf.boolean_mask(probabilities, proposal_images == b), tf.boolean_mask(box_deltas, proposal_images == b), shape.image_shape, config
            )
            for b in range(shape.batch)
        ]
    boxes = tf.concat([c[0] for c in chosen], axis=0)
    scores = tf.concat([c[1] for c in chosen], axis=0)
    classes = tf.concat([c[2] for c in chosen], axis=0)
    counts = tf.stack([tf.shape(c[1])[0] for c in chosen])
    detection_images = tf.concat([tf.fill(tf.shape(c[1]), b) for b, c in enumerate(chosen)], axis=0)
    masks = _full_size_masks(model, features, boxes, detection_images, classes, shape.image_shape, config)
    padded = [_pad_per_image(values, counts, config.max_detections) for values in (boxes, scores, classes, masks)]
    return dict(zip(OUTPUT_NAMES, (*padded, counts)))


def _with_spare_box(boxes, image_indices):
    """`boxes` and their images with one spare box appended (a pixel of the first image), dropped by the caller.

    An image may have no proposals or detections; ONNX Runtime's MatMul and Reshape refuse some zero-row
    tensors, so the heads and mask pasting always run on at least this one box.
    """
    import tensorflow as tf

    return tf.concat([boxes, tf.constant([[0.0, 0.0, 1.0, 1.0]])], axis=0), tf.concat([image_indices, [0]], axis=0)


def _box_head(model: MaskRCNN, features, proposals, image_indices, config: MaskRCNNConfig):
    """Class logits and box deltas of every proposal."""
    import tensorflow as tf

    boxes, indices = _with_spare_box(proposals, image_indices)
    with tf.name_scope("box_roi_align"):
        pooled = separable_roi_align(features, boxes, indices, config, config.pool_size)
    with tf.name_scope("box_head"):
        class_logits, box_deltas = model.box_head(pooled, training=False)
    return class_logits[:-1], box_deltas[:-1]


def _full_size_masks(model: MaskRCNN, features, boxes, image_indices, classes, image_shape: tuple[int, int], config: MaskRCNNConfig):
    """Each detection's mask of its own class, pasted into the image: (N, H, W) uint8 0/1."""
    import tensorflow as tf

    boxes, indices = _with_spare_box(boxes, image_indices)
    classes = tf.concat([classes, [0]], axis=0)
    with tf.name_scope("mask_roi_align"):
        pooled = separable_roi_align(features, boxes, indices, config, config.mask_pool_size)
    with tf.name_scope("mask_head"):
        mask_logits = model.mask_head(pooled, training=False)
    own_class = tf.cast(tf.equal(tf.range(config.num_classes)[None, :], classes[:, None]), tf.float32)
    small_masks = tf.reduce_sum(tf.sigmoid(mask_logits) * own_class[:, None, None, :], axis=-1)
    with tf.name_scope("paste_masks"):
        return tf.cast(paste_masks(small_masks, boxes, image_shape, config.mask_threshold), tf.uint8)[:-1]


def separable_roi_align(features: Sequence, boxes, image_indices, config: MaskRCNNConfig, output_size: int, sampling_ratio: int = 2):
    """`multilevel_roi_align` as matrix products on a window of each box's own level: the same samples, weights and
    borders, summed in another order.

    Aligned RoIAlign with its bilinear samples averaged per bin is separable: along each axis, bin i of box n takes a
    fixed mix of the map's rows (columns), and the pooled patch is `rows_weights @ map @ columns_weights.T` per
    channel. Only the rows and columns a box's samples touch have weight, so the product is taken over a window: all
    levels of all images lie end to end in one (cells, channels) table, one gather fetches for every box the
    square window of cells from its first touched row and column on its own level, and two batched products pool
    the window. The window is as large as the largest box needs (a maximum taken in the graph), so the result is
    exact for every box, and a box costs one level's work on a few cells instead of every level's whole map: on the 128x128
    nuclei tile, 300 proposals of 2-8 cells pool in a fraction of the time of whole-map products on every level.
    Rows and columns a window reaches beyond its map read the border cell with weight zero.
    """
    import tensorflow as tf

    levels = list(config.levels)
    if levels != list(range(levels[0], levels[0] + len(levels))):
        raise ValueError(f"Pyramid levels must be consecutive, got {levels}.")
    sizes = [(int(feature.shape[0]), int(feature.shape[1]), int(feature.shape[2])) for feature in features]
    channels = int(features[0].shape[3])
    table = tf.concat([tf.reshape(feature, (-1, channels)) for feature in features], axis=0)  # every level of every image
    position = pyramid_levels(boxes, levels, config.canonical_size, max(levels)) - levels[0]
    heights = tf.gather(tf.constant([height for _, height, _ in sizes], tf.int32), position)
    widths = tf.gather(tf.constant([width for _, _, width in sizes], tf.int32), position)
    level_starts = tf.constant(np.cumsum([0] + [batch * height * width for batch, height, width in sizes[:-1]]), tf.int32)
    strides = tf.pow(2.0, tf.cast(position + levels[0], tf.float32))
    # Rows and columns in one pass (the graph's small operations cost more than their arithmetic): (2N, S, K).
    first, weights = _window_weights(
        tf.concat([boxes[:, 0], boxes[:, 1]], 0), tf.concat([boxes[:, 2], boxes[:, 3]], 0), tf.tile(strides, [2]),
        tf.concat([heights, widths], 0), output_size, sampling_ratio,
    )
    count, window_size = tf.shape(boxes)[0], tf.shape(weights)[2]
    row_weights, column_weights = tf.split(weights, 2)
    first_row, first_column = tf.split(first, 2)
    offsets = tf.range(window_size)[None, :]
    rows = tf.minimum(first_row[:, None] + offsets, heights[:, None] - 1)
    columns = tf.minimum(first_column[:, None] + offsets, widths[:, None] - 1)
    base = tf.gather(level_starts, position) + image_indices * heights * widths
    cells = base[:, None, None] + rows[:, :, None] * widths[:, None, None] + columns[:, None, :]  # (N, K, K)
    window = tf.reshape(tf.gather(table, cells), tf.stack([count, window_size, window_size * channels]))
    pooled_rows = tf.reshape(tf.matmul(row_weights, window), tf.stack([count, output_size, window_size, channels]))  # (N, S_y, K, C)
    return tf.matmul(tf.tile(column_weights[:, None], (1, output_size, 1, 1)), pooled_rows)  # (N, S_y, S_x, C): one small product per box and bin row


def _window_weights(starts, ends, strides, cells, output_size: int, sampling_ratio: int):
    """Along one axis, each box's first touched cell (N,) int32 and the weight of the cells from there on in each of
    its bins: (N, output_size, window), the window as wide as the widest box needs on its level.

    Samples and borders as `roi_align._pool`: a sample more than a cell outside the map weighs nothing, one between
    the border and a cell outside reads the border cell. A sample at p (clipped to the map) weighs
    `max(0, 1 - |p - cell|)` on each cell: `1 - w` on floor(p) and `w` on the next, its bilinear weights.
    """
    import tensorflow as tf

    samples = output_size * sampling_ratio
    scaled_start, scaled_end = starts / strides - 0.5, ends / strides - 0.5
    grid = (tf.range(samples, dtype=tf.float32) + 0.5) / float(samples)
    positions = scaled_start[:, None] + grid[None, :] * (scaled_end - scaled_start)[:, None]  # (N, samples)
    last_cell = tf.cast(cells, tf.float32)[:, None] - 1.0
    valid = tf.cast((positions >= -1.0) & (positions <= last_cell + 1.0), tf.float32) / float(sampling_ratio)
    positions = tf.minimum(tf.maximum(positions, 0.0), last_cell)
    first = tf.floor(tf.reduce_min(positions, axis=1))
    last = tf.minimum(tf.floor(tf.reduce_max(positions, axis=1)) + 1.0, last_cell[:, 0])
    width = tf.cast(tf.reduce_max(last - first), tf.int32) + 1
    cell = (first[:, None] + tf.cast(tf.range(width), tf.float32)[None, :])[:, None, None, :]  # (N, 1, 1, window)
    shape = (-1, output_size, sampling_ratio, 1)
    per_sample = tf.nn.relu(1.0 - tf.abs(tf.reshape(positions, shape) - cell)) * tf.reshape(valid, shape)  # (N, S, sampling_ratio, window)
    return tf.cast(first, tf.int32), tf.add_n([per_sample[:, :, sample] for sample in range(sampling_ratio)])  # a ReduceSum over the middle axis ran 10x slower


def _proposals(image_logits, image_deltas, anchors: np.ndarray, image_shape: tuple[int, int], config: MaskRCNNConfig):
    """`propose` for one image, in the graph: the best `pre_nms` anchors decoded, thin boxes dropped, NMS."""
    import tensorflow as tf

    scores, top = tf.math.top_k(image_logits, k=min(config.pre_nms, len(anchors)))
    boxes = clip_boxes(decode_boxes(tf.gather(image_deltas, top), tf.gather(tf.constant(anchors), top)), image_shape)
    big = ((boxes[:, 2] - boxes[:, 0]) >= MIN_PROPOSAL_SIZE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_PROPOSAL_SIZE)
    boxes, scores = tf.boolean_mask(boxes, big), tf.boolean_mask(scores, big)
    keep = tf.image.non_max_suppression(boxes, scores, max_output_size=config.post_nms_test, iou_threshold=config.rpn_nms_iou)
    return tf.gather(boxes, keep)


def _select(proposals, probabilities, deltas, image_shape: tuple[int, int], config: MaskRCNNConfig):
    """`MaskRCNN._select` in the graph: per class refinement, threshold and NMS; the best `max_detections` overall."""
    import tensorflow as tf

    boxes, scores, classes = [], [], []
    for class_id in range(1, config.num_classes):
        class_scores = probabilities[:, class_id]
        keep = class_scores >= config.detection_min_score
        kept_scores = tf.boolean_mask(class_scores, keep)
        refined = clip_boxes(decode_boxes(tf.boolean_mask(deltas[:, class_id], keep), tf.boolean_mask(proposals, keep)), image_shape)
        survivors = tf.image.non_max_suppression(refined, kept_scores, config.max_detections, config.detection_nms_iou)
        boxes.append(tf.gather(refined, survivors))
        scores.append(tf.gather(kept_scores, survivors))
        classes.append(tf.fill(tf.shape(survivors), class_id))
    boxes, scores, classes = tf.concat(boxes, 0), tf.concat(scores, 0), tf.concat(classes, 0)
    best_scores, order = tf.math.top_k(scores, k=tf.minimum(config.max_detections, tf.shape(scores)[0]))  # ties: lower index first, as a stable sort
    return tf.gather(boxes, order), best_scores, tf.gather(classes, order)


def paste_masks(masks, boxes, image_shape: tuple[int, int], threshold: float):
    """`paste_mask` for many boxes at once: (N, S, S) probabilities in their boxes -> (N, H, W) bool at full size.

    Bilinear resampling at pixel centres, the grid's edge value held outside it (`map_coordinates`'s
    `mode="nearest"`), is separable: a (H, S) weight matrix for the rows and a (W, S) one for the columns,
    applied as `rows @ mask @ columns.T`. Pixels whose centre lies outside the box stay empty.
    """
    size = int(masks.shape[-1])
    row_weights, row_inside = _axis_weights(boxes[:, 0], boxes[:, 2], image_shape[0], size)
    column_weights, column_inside = _axis_weights(boxes[:, 1], boxes[:, 3], image_shape[1], size)
    values = ops.matmul(ops.matmul(row_weights, masks), ops.transpose(column_weights, (0, 2, 1)))
    inside = ops.logical_and(row_inside[:, :, None], column_inside[:, None, :])
    return ops.logical_and(values >= threshold, inside)


def _axis_weights(starts, ends, pixels: int, size: int):
    """Per box, the bilinear weights (N, pixels, size) of the mask grid at each pixel centre along one axis, and
    whether that centre lies inside the box (N, pixels)."""
    centres = ops.arange(pixels, dtype="float32")[None, :] + 0.5
    lengths = ops.maximum(ends - starts, 1e-6)[:, None]
    positions = (centres - starts[:, None]) / lengths * size - 0.5
    in_range = (centres - 0.5 >= ops.floor(starts)[:, None]) & (centres - 0.5 < ops.ceil(ends)[:, None])
    inside = in_range & (positions >= -0.5) & (positions <= size - 0.5)
    clamped = ops.clip(positions, 0.0, size - 1.0)
    low = ops.floor(clamped)
    weight = (clamped - low)[..., None]
    high = ops.minimum(low + 1.0, size - 1.0)
    grid = ops.arange(size, dtype="float32")
    low_hits = ops.cast(ops.equal(grid, low[..., None]), "float32")
    high_hits = ops.cast(ops.equal(grid, high[..., None]), "float32")
    return (1.0 - weight) * low_hits + weight * high_hits, inside


def _pad_per_image(values, counts, slots: int):
    """Rows of all images laid end to end -> (batch, slots, ...): image b's `counts[b]` rows first, then zeros."""
    import tensorflow as tf

    offsets = tf.cumsum(counts, exclusive=True)
    slot = tf.range(slots)[None, :]
    filler = tf.reduce_sum(counts)  # the index of a zero row appended below
    rows = tf.where(slot < counts[:, None], offsets[:, None] + slot, filler)
    padded = tf.concat([values, tf.zeros((1, *values.shape[1:]), values.dtype)], axis=0)
    return tf.gather(padded, rows)


def detections_from_outputs(outputs: Mapping[str, np.ndarray]) -> list[Detections]:
    """The padded outputs of the whole-detector graph (or of its exported file), by name, as one `Detections` per image.

    Example:
        >>> detections = detections_from_outputs(dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {"images": batch}))))
    """
    boxes, scores, class_ids, masks, counts = (np.asarray(outputs[name]) for name in OUTPUT_NAMES)
    return [
        Detections(
            boxes[b, :count].astype(np.float32), scores[b, :count].astype(np.float32),
            class_ids[b, :count].astype(np.int32), masks[b, :count].astype(bool),
        )
        for b, count in enumerate(int(value) for value in counts)
    ]
