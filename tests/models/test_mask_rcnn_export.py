"""The whole Mask R-CNN in one exported graph (proposals, NMS, RoIAlign, heads, mask pasting): ONNX Runtime and OpenVINO
find the Keras detector's objects on the test configuration, and a file that does not is refused."""

import numpy as np
import pytest

from segprune.models.mask_rcnn import mask_rcnn
from segprune.models.mask_rcnn.export import detection_function, detections_from_outputs, paste_masks
from segprune.models.mask_rcnn.model import paste_mask
from segprune.runtime.detector_export import (
    DetectionMismatchError,
    DetectionTolerance,
    DetectorRunner,
    compare_detections,
    export_detector,
)
from tests.fixtures import TINY_MASK_RCNN


@pytest.fixture(scope="module")
def detector():
    """A random tiny detector that keeps every detection, so that each image has several to compare."""
    import keras

    keras.utils.set_random_seed(3)
    return mask_rcnn(detection_min_score=0.0, max_detections=12, **TINY_MASK_RCNN)


def _images(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 64, 64, 1)).astype(np.float32)


def test_graph_gives_the_keras_detections_padded_to_max_detections(detector):
    images = _images(2, seed=1)
    function, _ = detection_function(detector, images.shape)
    outputs = {name: np.asarray(value) for name, value in function(images).items()}
    assert outputs["masks"].shape == (2, 12, 64, 64) and outputs["boxes"].shape == (2, 12, 4)
    detections = detections_from_outputs(outputs)
    agreement = compare_detections(detector.detect(images), detections)
    assert agreement.detections == int(outputs["num_detections"].sum()) > 0
    assert agreement.box_pixels < 1e-4 and agreement.score < 1e-6 and agreement.mask_iou == 1.0
    for count, scores, masks in zip(outputs["num_detections"], outputs["scores"], outputs["masks"]):
        assert not scores[count:].any() and not masks[count:].any()  # padding is zero


@pytest.mark.parametrize("format, suffix", [("onnx", ".onnx"), ("openvino", ".xml")])
def test_exported_detector_finds_the_keras_detections(detector, tmp_path, format, suffix):
    path = tmp_path / f"detector{suffix}"
    agreement = export_detector(detector, path, format, input_shape=(2, 64, 64), samples=list(_images(3, seed=2)))
    assert agreement.images == 6 and agreement.detections > 0  # the random batch and two batches of samples
    assert agreement.box_pixels < 1e-3 and agreement.score < 1e-5 and agreement.mask_iou >= 0.99
    runner = DetectorRunner(path)
    assert runner.executed_precision == "fp32"
    images = _images(2, seed=5)
    assert compare_detections(detector.detect(images), runner.detect(images)).mask_iou >= 0.99
    with pytest.raises(ValueError, match="keeps the score threshold it was exported with"):
        runner.detect(images, min_score=0.05)


def test_a_detector_beyond_tolerance_is_refused_and_an_image_without_detections_gives_none(tmp_path):
    model = mask_rcnn(**TINY_MASK_RCNN)
    path = tmp_path / "detector.onnx"
    with pytest.raises(DetectionMismatchError, match="differs from Keras"):
        export_detector(model, path, input_shape=(1, 64, 64), tolerance=DetectionTolerance(box_pixels=-1.0))
    assert not path.exists() and not list(tmp_path.iterdir())
    agreement = export_detector(model, path, input_shape=(1, 64, 64), min_score=1.1)  # no probability reaches 1.1
    assert agreement.detections == 0
    detections = DetectorRunner(path).detect(_images(1, seed=0))
    assert len(detections) == 1 and len(detections[0]) == 0 and detections[0].masks.shape == (0, 64, 64)


def test_a_file_that_is_not_a_whole_detector_is_refused_by_name(tmp_path):
    from segprune.runtime.export import export_model

    export_model(mask_rcnn(**TINY_MASK_RCNN).trunk, tmp_path / "trunk.onnx", input_shape=(1, 64, 64))
    with pytest.raises(ValueError, match="is not a whole Mask R-CNN"):
        DetectorRunner(tmp_path / "trunk.onnx")


def test_pasting_in_the_graph_matches_paste_mask():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 8, 8)).astype(np.float32)
    boxes = np.array([[3.2, 4.7, 20.1, 15.5], [-2.0, 0.0, 9.0, 9.0], [10.0, 10.0, 10.0, 30.0], [0.0, 0.0, 32.0, 32.0], [30.5, 7.25, 31.75, 8.0]], np.float32)
    pasted = np.asarray(paste_masks(masks, boxes, (32, 40), 0.5))
    expected = np.stack([paste_mask(m, b, (32, 40), 0.5) for m, b in zip(masks, boxes)])
    np.testing.assert_array_equal(pasted, expected)


def test_shapes_the_graph_cannot_take_are_refused(detector):
    with pytest.raises(ValueError, match="multiples of 16"):
        detection_function(detector, (1, 60, 64))
    with pytest.raises(ValueError, match=r"fixed \(batch, height, width, 1\)"):
        detection_function(detector, (1, 64, 64, 3))


def _boxes_of_every_kind(rng, count: int, side: int) -> np.ndarray:
    """Boxes of every level, some over the border, a fifth long and one pixel thin (a window wider than the smaller maps)."""
    corners = rng.uniform(-8, side - 4, size=(count, 2)).astype(np.float32)
    sides = rng.uniform(0.5, 50, size=(count, 2)).astype(np.float32)
    thin = count // 10
    sides[:thin] = np.stack([np.ones(thin), rng.uniform(30, 2 * side, thin)], axis=1)
    sides[thin : 2 * thin] = np.stack([rng.uniform(30, 2 * side, thin), np.full(thin, 1.2)], axis=1)
    return np.concatenate([corners, corners + sides], axis=1)


@pytest.mark.parametrize("side", [64, 96])
def test_separable_roi_align_equals_the_multilevel_roi_align_detection_runs(detector, side):
    from segprune.models.mask_rcnn.export import separable_roi_align
    from segprune.models.mask_rcnn.roi_align import multilevel_roi_align

    config = detector.config
    rng = np.random.default_rng(side)
    features = [rng.normal(size=(2, side // 2**level, side // 2**level, 8)).astype(np.float32) for level in config.levels]
    boxes = _boxes_of_every_kind(rng, 60, side)
    indices = rng.integers(0, 2, 60).astype(np.int32)
    for size in (config.pool_size, config.mask_pool_size):
        expected = multilevel_roi_align(features, boxes, indices, config.levels, size, config.canonical_size, max(config.levels))
        np.testing.assert_allclose(np.asarray(separable_roi_align(features, boxes, indices, config, size)), np.asarray(expected), atol=2e-5)


def test_separable_roi_align_reads_each_box_on_its_own_level_and_image_only(detector):
    """Every cell of the other levels and images is NaN: a box that read any of them, even with weight zero, would be NaN."""
    from segprune.models.mask_rcnn.export import separable_roi_align
    from segprune.models.mask_rcnn.roi_align import multilevel_roi_align, pyramid_levels

    config = detector.config
    rng = np.random.default_rng(1)
    boxes = _boxes_of_every_kind(rng, 40, 64)
    levels = np.asarray(pyramid_levels(boxes, config.levels, config.canonical_size, max(config.levels)))
    for level in config.levels:
        for image in (0, 1):
            features = [np.full((2, 64 // 2**k, 64 // 2**k, 8), np.nan, np.float32) for k in config.levels]
            features[level - config.levels[0]][image] = rng.normal(size=features[level - config.levels[0]].shape[1:])
            own = levels == level
            indices = np.full(int(own.sum()), image, np.int32)
            pooled = np.asarray(separable_roi_align(features, boxes[own], indices, config, config.pool_size))
            expected = multilevel_roi_align(features, boxes[own], indices, config.levels, config.pool_size, config.canonical_size, max(config.levels))
            assert own.sum() > 0 and np.isfinite(pooled).all()
            np.testing.assert_allclose(pooled, np.asarray(expected), atol=2e-5)
