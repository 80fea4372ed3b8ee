"""Mask R-CNN: RoIAlign against a NumPy reference, anchors, box encoding, matching, and the detector itself."""

import dataclasses

import keras
import numpy as np
import pytest
from keras import ops

from segprune.data.instances import InstanceDataset, instances_from_labels
from segprune.graph import build_channel_graph, remove_channels
from segprune.models import ModelFileError, unet
from segprune.models.mask_rcnn import MaskRCNN, load_mask_rcnn, mask_rcnn, save_mask_rcnn, train_mask_rcnn
from segprune.models.mask_rcnn.boxes import (
    box_iou,
    decode_boxes,
    encode_boxes,
    level_anchors,
    match_boxes,
    sample_labels,
)
from segprune.models.mask_rcnn.model import paste_mask
from segprune.models.mask_rcnn.proposals import propose
from segprune.models.mask_rcnn.roi_align import multilevel_roi_align, pyramid_levels, roi_align
from segprune.models.mask_rcnn.targets import mask_targets, roi_targets, rpn_targets
from tests.fixtures import TINY_MASK_RCNN
from tests.graph.harness import choose_channels, randomize_weights, zeroed_copy


def _bilinear_reference(feature, y, x):
    """torchvision's `bilinear_interpolate` (aligned RoIAlign), one point, written as plainly as possible."""
    height, width = feature.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feature.shape[-1])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(np.floor(y)), int(np.floor(x))
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * feature[y_low, x_low]
        + hy * lx * feature[y_low, x_high]
        + ly * hx * feature[y_high, x_low]
        + ly * lx * feature[y_high, x_high]
    )


def _roi_align_reference(features, boxes, indices, size, stride, ratio):
    out = np.zeros((len(boxes), size, size, features.shape[-1]))
    for n, (box, index) in enumerate(zip(boxes, indices)):
        y1, x1, y2, x2 = np.asarray(box, np.float64) / stride - 0.5
        bin_h, bin_w = (y2 - y1) / size, (x2 - x1) / size
        for i in range(size):
            for j in range(size):
                total = 0.0
                for a in range(ratio):
                    for b in range(ratio):
                        y = y1 + i * bin_h + (a + 0.5) * bin_h / ratio
                        x = x1 + j * bin_w + (b + 0.5) * bin_w / ratio
                        total = total + _bilinear_reference(features[index], y, x)
                out[n, i, j] = total / ratio**2
    return out


def test_roi_align_matches_numpy_reference_inside_at_borders_and_sub_pixel():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 8, 10, 3)).astype(np.float32)
    boxes = np.array(
        [
            [4.0, 4.0, 20.0, 28.0],  # inside
            [-6.0, -5.0, 10.0, 9.0],  # over the top-left border, partly more than a cell outside
            [20.0, 30.0, 34.0, 44.0],  # over the bottom-right border
            [13.3, 17.6, 14.1, 18.0],  # smaller than a pixel, far smaller than a feature cell
            [0.0, 0.0, 32.0, 40.0],  # the whole map
        ],
        np.float32,
    )
    indices = np.array([0, 1, 0, 1, 1])
    expected = _roi_align_reference(features, boxes, indices, size=3, stride=4, ratio=2)
    actual = ops.convert_to_numpy(roi_align(features, boxes, indices, output_size=3, stride=4, sampling_ratio=2))
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_roi_align_of_a_constant_map_is_that_constant_inside():
    features = np.full((1, 16, 16, 2), 3.5, np.float32)
    pooled = ops.convert_to_numpy(roi_align(features, np.array([[2.0, 3.0, 9.5, 12.0]]), np.array([0]), 7, stride=1))
    np.testing.assert_allclose(pooled, 3.5, atol=1e-6)


def test_multilevel_roi_align_pools_each_box_from_its_level():
    rng = np.random.default_rng(1)
    p2, p3 = rng.normal(size=(1, 16, 16, 2)), rng.normal(size=(1, 8, 8, 2))
    boxes = np.array([[2.0, 2.0, 10.0, 10.0], [10.0, 10.0, 50.0, 50.0]], np.float32)
    np.testing.assert_array_equal(ops.convert_to_numpy(pyramid_levels(boxes, [2, 3], 16.0, 3)), [2, 3])
    pooled = ops.convert_to_numpy(multilevel_roi_align([p2, p3], boxes, np.zeros(2, int), [2, 3], 4, 16.0, 3))
    np.testing.assert_allclose(pooled[0], ops.convert_to_numpy(roi_align(p2, boxes[:1], [0], 4, stride=4))[0], atol=1e-6)
    np.testing.assert_allclose(pooled[1], ops.convert_to_numpy(roi_align(p3, boxes[1:], [0], 4, stride=8))[0], atol=1e-6)


def test_anchors_are_centred_on_cells_in_output_order():
    anchors = level_anchors((16, 8), stride=4, sizes=[8.0], aspect_ratios=[0.5, 1.0, 2.0])
    assert anchors.shape == (4 * 2 * 3, 4)
    heights, widths = anchors[:3, 2] - anchors[:3, 0], anchors[:3, 3] - anchors[:3, 1]
    np.testing.assert_allclose(heights * widths, 64.0, rtol=1e-5)
    np.testing.assert_allclose(widths / heights, [0.5, 1.0, 2.0], rtol=1e-5)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    np.testing.assert_allclose(centres[3], [2.0, 6.0])  # second cell of the first row
    np.testing.assert_allclose(centres[6], [6.0, 2.0])  # first cell of the second row


def test_box_encoding_round_trip():
    rng = np.random.default_rng(2)
    references = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(0, 50, (20, 2))], axis=1).astype(np.float32)
    references[:, 2:] = references[:, :2] + rng.uniform(2, 30, (20, 2))
    boxes = references + rng.normal(0, 3, (20, 4)).astype(np.float32)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    decoded = ops.convert_to_numpy(decode_boxes(encode_boxes(boxes, references), references))
    np.testing.assert_allclose(decoded, boxes, atol=1e-3)
    np.testing.assert_allclose(encode_boxes(references, references), 0.0, atol=1e-6)


def test_iou_by_hand():
    iou = box_iou(np.array([[0, 0, 2, 2], [0, 0, 4, 4]], float), np.array([[1, 1, 3, 3], [10, 10, 11, 11]], float))
    np.testing.assert_allclose(iou, [[1 / 7, 0], [4 / 16, 0]])


def test_matching_thresholds_and_best_anchor_for_every_object():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 9, 10], [20, 20, 30, 30], [50, 50, 60, 60], [40, 40, 44, 44]], np.float32)
    gt = np.array([[0, 0, 10, 10], [41, 41, 44, 45]], np.float32)
    matches = match_boxes(anchors, gt, positive_iou=0.7, negative_iou=0.3, best_is_positive=True)
    # anchor 4 overlaps object 1 by only 9/19 but is its best anchor, so it is positive and assigned to it.
    np.testing.assert_array_equal(matches.labels, [1, 1, 0, 0, 1])
    assert matches.gt_index[0] == 0 and matches.gt_index[4] == 1
    strict = match_boxes(anchors, gt, positive_iou=0.7, negative_iou=0.3, best_is_positive=False)
    np.testing.assert_array_equal(strict.labels, [1, 1, 0, 0, -1])
    assert (match_boxes(anchors, gt[:0], 0.7, 0.3, True).labels == 0).all()


def test_sampling_caps_positives_and_total():
    labels = np.array([1] * 10 + [0] * 30 + [-1] * 5, np.int8)
    sampled = sample_labels(labels, count=16, positive_share=0.25, rng=np.random.default_rng(0))
    assert (sampled == 1).sum() == 4 and (sampled == 0).sum() == 12
    assert ((sampled != -1) <= (labels != -1)).all()


def test_proposals_are_decoded_clipped_and_suppressed():
    anchors = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [28, 28, 40, 40]], np.float32)
    logits = np.array([[3.0, 2.0, 1.0, 0.5]], np.float32)
    deltas = np.zeros((1, 4, 4), np.float32)
    (boxes,) = propose(logits, deltas, anchors, (32, 32), pre_nms=10, post_nms=10, iou_threshold=0.5)
    # anchor 1 overlaps anchor 0 by 0.68 and is suppressed; anchor 3 is clipped to the image.
    np.testing.assert_allclose(boxes, [[0, 0, 10, 10], [20, 20, 30, 30], [28, 28, 32, 32]])


def _tile_dataset():
    labels = np.zeros((64, 64), np.uint16)
    labels[8:20, 10:22] = 1
    labels[36:46, 30:44] = 2
    labels[50:58, 6:14] = 3
    image = np.where(labels > 0, 0.8, 0.1).astype(np.float32)[..., None]
    instances = instances_from_labels(labels)
    return InstanceDataset("tile", 2, 1, {"train": ["tile"], "test": ["tile"]}, lambda _: (image, instances))


def test_a_few_steps_reduce_the_loss_on_one_tile():
    model = mask_rcnn(**TINY_MASK_RCNN)
    history = train_mask_rcnn(model, _tile_dataset(), steps=20, batch_size=2, learning_rate=1e-2, augment=False)
    totals = [sum(record.values()) for record in history]
    assert set(history[0]) == {"rpn_objectness", "rpn_box", "classifier", "box", "mask"}
    assert all(np.isfinite(totals))
    assert np.mean(totals[-3:]) < 0.5 * np.mean(totals[:3])


def test_detect_returns_full_size_instances():
    model = mask_rcnn(detection_min_score=0.0, max_detections=5, **TINY_MASK_RCNN)
    image, _ = _tile_dataset().load("tile")
    (detections,) = model.detect(image[None])
    assert len(detections) <= 5
    assert detections.masks.shape == (len(detections), 64, 64) and detections.masks.dtype == bool
    assert detections.boxes.shape == (len(detections), 4)
    assert (detections.class_ids == 1).all()
    assert (np.diff(detections.scores) <= 0).all()
    assert (detections.boxes[:, :2] >= 0).all() and (detections.boxes[:, 2:] <= 64).all()


def test_paste_mask_fills_the_box_where_the_grid_is_on():
    full = paste_mask(np.ones((8, 8)), np.array([2.0, 3.0, 6.0, 9.0]), (10, 12), 0.5)
    expected = np.zeros((10, 12), bool)
    expected[2:6, 3:9] = True
    np.testing.assert_array_equal(full, expected)
    left_half = np.zeros((8, 8))
    left_half[:, :4] = 1
    np.testing.assert_array_equal(paste_mask(left_half, np.array([0.0, 0.0, 8.0, 8.0]), (8, 8), 0.5)[:, :4], True)
    assert not paste_mask(left_half, np.array([0.0, 0.0, 8.0, 8.0]), (8, 8), 0.5)[:, 4:].any()


def test_images_of_the_wrong_shape_are_refused():
    model = mask_rcnn(**TINY_MASK_RCNN)
    with pytest.raises(ValueError, match="multiples of 16"):
        model.detect(np.zeros((1, 60, 64, 1), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, height, width, 1\)"):
        model.detect(np.zeros((1, 64, 64, 3), np.float32))


def test_trunk_prunes_exactly_including_the_shared_rpn_head_and_the_fpn(tmp_path):
    model = mask_rcnn(**{**TINY_MASK_RCNN, "fpn_filters": 12})
    trunk = model.trunk
    randomize_weights(trunk, seed=3)
    graph = build_channel_graph(trunk)
    by_producers = {tuple(group.producers): group for group in graph.groups}
    rpn_group = by_producers[("rpn_conv",)]
    fpn_group = by_producers[("fpn_lateral2", "fpn_lateral3", "fpn_lateral4")]
    # The pyramid levels are read by the RoI heads outside the trunk, so their channels stay.
    assert not by_producers[("fpn_p2", "fpn_p3", "fpn_p4")].prunable.any()
    removed = sorted(set(choose_channels(graph, seed=3)) | set(rpn_group.classes[2:5]) | set(fpn_group.classes[:3]))
    pruned = remove_channels(graph, removed)
    reference = zeroed_copy(graph, removed)
    for layer_name, group in (("rpn_conv", rpn_group), ("fpn_lateral3", fpn_group)):
        assert pruned.get_layer(layer_name).filters == 12 - len(set(group.classes) & set(removed)) <= 12 - 3
    sample = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)
    expected, actual = reference.predict(sample, verbose=0), pruned.predict(sample, verbose=0)
    assert len(actual) == len(expected) == 9
    for pruned_output, reference_output in zip(actual, expected):
        assert pruned_output.shape == reference_output.shape
        np.testing.assert_allclose(pruned_output, reference_output, atol=1e-5, rtol=0)
    assert pruned.count_params() < trunk.count_params()

    # The pruned trunk drops into the detector in place of the zeroed original, and detects the same objects.
    options = dict(detection_min_score=0.0, max_detections=5)
    image = sample[:1]
    config = dataclasses.replace(model.config, **options)
    from_pruned = MaskRCNN(config, pruned, model.box_head, model.mask_head).detect(image)[0]
    from_zeroed = MaskRCNN(config, reference, model.box_head, model.mask_head).detect(image)[0]
    np.testing.assert_allclose(from_pruned.boxes, from_zeroed.boxes, atol=1e-4)

    path = tmp_path / "trunk.keras"
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    for reloaded_output, pruned_output in zip(reloaded.predict(sample, verbose=0), actual):
        np.testing.assert_allclose(reloaded_output, pruned_output, atol=1e-6)


def test_saves_as_one_keras_file_and_reloads_the_same_detector(tmp_path):
    model = mask_rcnn(detection_min_score=0.0, max_detections=5, anchor_sizes=(6.0, 12.0, 24.0), **TINY_MASK_RCNN)
    image, _ = _tile_dataset().load("tile")
    path = save_mask_rcnn(model, tmp_path / "mask_rcnn.keras")
    reloaded = load_mask_rcnn(path)
    assert reloaded.config == model.config
    before, after = model.detect(image[None])[0], reloaded.detect(image[None])[0]
    np.testing.assert_allclose(after.boxes, before.boxes, atol=1e-6)
    np.testing.assert_array_equal(after.masks, before.masks)
    assert isinstance(keras.saving.load_model(path), MaskRCNN)


def test_loading_another_model_as_a_mask_rcnn_names_the_file(tmp_path):
    path = tmp_path / "unet.keras"
    unet(base_filters=4, depth=1).save(path)
    with pytest.raises(ModelFileError, match=r"unet\.keras.*Functional.*not a Mask R-CNN"):
        load_mask_rcnn(path)


def test_the_best_validated_weights_are_kept():
    model = mask_rcnn(**TINY_MASK_RCNN)
    scores = iter([0.1, 0.9, 0.2, 0.3])
    snapshots = {}

    def remember(step, record):
        snapshots[step] = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]

    history = train_mask_rcnn(
        model, _tile_dataset(), steps=4, batch_size=1, augment=False, validate=lambda _: next(scores), validate_every=1, on_step=remember
    )
    assert [record["validation"] for record in history] == [0.1, 0.9, 0.2, 0.3]
    for variable, kept in zip(model.weights, snapshots[1]):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), kept)
    assert any(not np.array_equal(a, b) for a, b in zip(snapshots[1], snapshots[3]))


def test_roi_targets_sample_the_objects_with_their_masks_and_classes():
    config = mask_rcnn(**TINY_MASK_RCNN).config
    labels = np.zeros((32, 32), np.uint16)
    labels[4:12, 8:16] = 1
    labels[20:28, 2:6] = 2
    truth = instances_from_labels(labels)
    far_away = np.array([[0.0, 24.0, 6.0, 30.0]], np.float32)
    targets = roi_targets([far_away], [truth.boxes], [np.array([1, 3])], [truth.masks], config, np.random.default_rng(0))
    # The objects' own boxes are positives (classes 1 and 3), the far proposal is background.
    np.testing.assert_array_equal(targets.class_ids, [1, 3, 0])
    np.testing.assert_allclose(targets.deltas[:2], 0.0, atol=1e-6)
    assert targets.masks.shape == (2, config.mask_size, config.mask_size)
    # A box that is exactly its rectangular object is foreground but for corner samples, which bilinear
    # resampling (Detectron2's aligned RoIAlign on the bitmask) mixes with the background outside.
    assert targets.masks[:, 1:-1, 1:-1].all() and targets.masks.mean() > 0.98
    # A box twice as wide as the object: its left half is the object.
    half = mask_targets(truth.masks, np.array([[4.0, 8.0, 12.0, 24.0]]), np.array([0]), 8)[0]
    assert half[:, :4].all() and not half[:, 4:].any()


def test_rpn_targets_mark_each_objects_best_anchor():
    config = mask_rcnn(**TINY_MASK_RCNN).config
    anchors = config.anchors((32, 32))
    boxes = np.array([[4.0, 4.0, 10.0, 10.0]], np.float32)
    targets = rpn_targets(anchors, [boxes], config, np.random.default_rng(0))
    positive = np.flatnonzero(targets.labels[0] == 1)
    assert len(positive) >= 1 and box_iou(anchors[positive], boxes).max() == box_iou(anchors, boxes).max()
    decoded = ops.convert_to_numpy(decode_boxes(targets.deltas[0, positive], anchors[positive]))
    np.testing.assert_allclose(decoded, np.repeat(boxes, len(positive), axis=0), atol=1e-3)
    assert (targets.labels[0] >= 0).sum() <= config.rpn_samples
