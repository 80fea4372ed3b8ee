"""A search times a Mask R-CNN as it ships: the whole exported detector, its heads and NMS included, not the trunk alone."""

import numpy as np
import pytest

import segprune
from segprune.models.mask_rcnn import MaskRCNN, mask_rcnn
from segprune.runtime import detector_latency
from segprune.runtime.benchmark import Latency
from segprune.search.kinds import network_timer, time_parents
from segprune.search.settings import SearchSettings
from tests.fixtures import TINY_MASK_RCNN

SETTINGS = SearchSettings(target="latency=0.5", image_size=(64, 64), threads=1)


@pytest.mark.exhaustive  # make test-all: a tf2onnx export (4 s); the wiring is checked below without one
def test_a_mask_rcnn_is_timed_as_its_whole_detector_exported_and_verified(monkeypatch):
    from segprune.runtime.detector_export import DetectorRunner

    timed = []
    real_file_latency = detector_latency.file_latency

    def whole_detectors_only(paths, *args, **options):
        for path in paths:
            DetectorRunner(path)  # refuses a file that is not a whole detector (boxes, scores, class_ids, masks out)
            timed.append(path.suffix)
        return real_file_latency(paths, *args, **{**options, "rounds": 2})

    monkeypatch.setattr(detector_latency, "file_latency", whole_detectors_only)
    (dense_ms,) = time_parents([mask_rcnn(**TINY_MASK_RCNN)], SETTINGS)
    assert timed == [".onnx"] and dense_ms > 0


def test_a_budget_times_each_trunk_inside_the_detector_with_its_heads(monkeypatch):
    model = mask_rcnn(**TINY_MASK_RCNN)
    narrow = segprune.prune(model, "l1", ratio=0.5, round_to=1, image_size=64, progress=False).model.trunk
    exported = []

    def recorded(detector, path, shape, min_score):
        exported.append((detector, path.suffix, shape.as_tuple(), min_score))
        path.write_text("")

    monkeypatch.setattr(detector_latency, "write_detector", recorded)
    monkeypatch.setattr(detector_latency, "file_latency", lambda paths, *a, **o: [Latency(str(p), 2.0 + i, 3.0, 2, "fp32") for i, p in enumerate(paths)])
    assert network_timer(model, SETTINGS)([model.trunk, narrow]) == [2.0, 3.0]
    # every score kept: each detector's heads run on max_detections regions, whatever it finds
    assert [written[1:] for written in exported] == [(".onnx", (1, 64, 64, 1), 0.0)] * 2
    for (detector, *_), trunk in zip(exported, [model.trunk, narrow]):
        assert isinstance(detector, MaskRCNN) and detector.trunk is trunk
        for head, dense_head in ((detector.box_head, model.box_head), (detector.mask_head, model.mask_head)):
            assert all(np.array_equal(a, b) for a, b in zip(head.get_weights(), dense_head.get_weights(), strict=True))


def test_a_whole_detector_has_no_int8_timing():
    with pytest.raises(ValueError, match="timed in fp32 .* no int8 form"):
        time_parents([mask_rcnn(**TINY_MASK_RCNN)], SearchSettings(target="latency=0.5", image_size=(64, 64), precision="int8"))


@pytest.mark.parametrize(("runtime", "precision", "refusal"), [("onnxruntime", "int8", "no int8 form"), ("litert", "fp32", "got runtime 'litert'")])
def test_a_search_that_cannot_time_its_detector_is_refused_before_it_starts(monkeypatch, runtime, precision, refusal):
    from segprune import api

    # refused before the first step of any work (it used to surface after the whole search, its result lost)
    monkeypatch.setattr(api, "check_finite_weights", lambda *args: pytest.fail("the request was not refused up front"))
    with pytest.raises(ValueError, match=refusal):
        segprune.prune(
            mask_rcnn(**TINY_MASK_RCNN), "greedy", target="flops=0.6", runtime=runtime, precision=precision, image_size=64, progress=False
        )
