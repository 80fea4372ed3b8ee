"""Instance metrics: the DSB score against hand-computed cases, COCO mask AP through pycocotools."""

from types import SimpleNamespace

import numpy as np
import pytest

from segprune.data.instances import InstanceDataset, instances_from_labels
from segprune.instance_metrics import AP_MIN_SCORE, dsb_score, evaluate_instances, label_image, mask_ap, mean_dsb_score


def _square(labels, object_id, rows, cols):
    labels[rows[0] : rows[1], cols[0] : cols[1]] = object_id
    return labels


def _two_objects():
    labels = np.zeros((32, 32), np.int32)
    _square(labels, 1, (0, 10), (0, 10))
    return _square(labels, 2, (20, 30), (20, 30))


def _prediction(labels, scores):
    instances = instances_from_labels(labels)
    return SimpleNamespace(masks=instances.masks, scores=np.asarray(scores, float), class_ids=instances.class_ids)


def test_dsb_perfect_and_empty():
    truth = _two_objects()
    assert dsb_score(truth, truth) == 1.0
    assert dsb_score(truth * 7, truth) == 1.0  # ids need not agree
    assert dsb_score(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    assert dsb_score(truth, np.zeros_like(truth)) == 0.0
    assert dsb_score(np.zeros_like(truth), truth) == 0.0


def test_dsb_partial_overlap_counts_below_its_iou_only():
    truth = _square(np.zeros((16, 16), np.int32), 1, (0, 10), (0, 10))
    predicted = _square(np.zeros((16, 16), np.int32), 1, (0, 9), (0, 8))  # 72 of 100 pixels: IoU 0.72
    # A hit at 0.5, 0.55, 0.6, 0.65, 0.7 (score 1 each); a miss at 0.75..0.95 (TP 0, FP 1, FN 1: score 0).
    assert dsb_score(truth, predicted) == pytest.approx(0.5)


def test_dsb_false_positive_and_false_negative():
    truth = _two_objects()
    predicted = _square(np.zeros_like(truth), 1, (0, 10), (0, 10))
    _square(predicted, 2, (12, 16), (0, 4))  # hits nothing
    # At every threshold: TP 1, FP 1, FN 1.
    assert dsb_score(truth, predicted) == pytest.approx(1 / 3)
    # Missing only: TP 1, FN 1 -> 1/2.
    assert dsb_score(truth, _square(np.zeros_like(truth), 1, (0, 10), (0, 10))) == pytest.approx(1 / 2)


def test_label_image_resolves_overlaps_by_score():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :, :3] = True
    masks[1, :, 1:] = True
    labels = label_image(masks, np.array([0.2, 0.9]))
    assert (labels[:, 1:] == 1).all() and (labels[:, 0] == 2).all()


def test_mean_dsb_over_images():
    truth = instances_from_labels(_two_objects())
    perfect = _prediction(_two_objects(), [0.9, 0.8])
    empty = SimpleNamespace(masks=np.zeros((0, 32, 32), bool), scores=np.zeros(0), class_ids=np.zeros(0, int))
    assert mean_dsb_score([truth, truth], [perfect, empty]) == pytest.approx(0.5)


def test_mask_ap_perfect_half_and_shifted():
    truth = instances_from_labels(_two_objects())
    assert mask_ap([truth], [_prediction(_two_objects(), [0.9, 0.8])]) == pytest.approx({"ap": 1.0, "ap50": 1.0, "ap75": 1.0})
    # One of two objects found, with the top score: precision 1 up to recall 0.5, then nothing -> 51 of COCO's 101 recall points.
    half = _prediction(_square(np.zeros((32, 32), np.int32), 1, (0, 10), (0, 10)), [0.9])
    assert mask_ap([truth], [half])["ap50"] == pytest.approx(51 / 101)
    # IoU 0.72 with the only object: a match at thresholds 0.5..0.7 (5 of 10), none from 0.75 on.
    single = instances_from_labels(_square(np.zeros((16, 16), np.int32), 1, (0, 10), (0, 10)))
    shifted = _prediction(_square(np.zeros((16, 16), np.int32), 1, (0, 9), (0, 8)), [0.9])
    assert mask_ap([single], [shifted]) == pytest.approx({"ap": 0.5, "ap50": 1.0, "ap75": 0.0})


def test_mask_ap_without_predictions_is_zero():
    truth = instances_from_labels(_two_objects())
    empty = SimpleNamespace(masks=np.zeros((0, 32, 32), bool), scores=np.zeros(0), class_ids=np.zeros(0, int))
    assert mask_ap([truth], [empty]) == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}


def test_mask_ap_skips_an_empty_tile_with_nothing_detected_and_counts_detections_on_it_as_false():
    truth = instances_from_labels(_two_objects())
    no_objects = instances_from_labels(np.zeros((32, 32), np.int32))
    nothing = SimpleNamespace(masks=np.zeros((0, 32, 32), bool), scores=np.zeros(0), class_ids=np.zeros(0, int))
    perfect = _prediction(_two_objects(), [0.9, 0.8])
    assert mask_ap([truth, no_objects], [perfect, nothing]) == pytest.approx({"ap": 1.0, "ap50": 1.0, "ap75": 1.0})
    # Two confident detections on the empty tile rank above both true ones: precision 1/3 at recall 0.5, 1/2 at
    # recall 1; COCO takes the best precision at any higher recall, so 1/2 throughout.
    phantom = _prediction(_two_objects(), [0.99, 0.95])
    assert mask_ap([truth, no_objects], [perfect, phantom])["ap50"] == pytest.approx(0.5)
    # No objects anywhere: nothing detected is right (1), anything detected is wrong (0); neither raises.
    assert mask_ap([no_objects], [nothing]) == {"ap": 1.0, "ap50": 1.0, "ap75": 1.0}
    assert mask_ap([no_objects, no_objects], [nothing, phantom]) == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}


def test_evaluate_instances_ranks_low_scores_for_ap_and_takes_the_default_detections_for_dsb():
    truth = instances_from_labels(_two_objects())
    image = np.zeros((32, 32, 1), np.float32)
    data = InstanceDataset("two", 2, 1, {"test": ["a", "b", "c"]}, lambda _: (image, truth))
    calls = []

    class Detector:
        def detect(self, images, min_score=None):
            calls.append((len(images), min_score))
            # the default threshold keeps only the first object; the low one keeps both
            keep = 2 if min_score is not None else 1
            return [SimpleNamespace(masks=truth.masks[:keep], scores=np.array([0.9, 0.1])[:keep], class_ids=truth.class_ids[:keep])
                    for _ in images]

    scores = evaluate_instances(Detector(), data, "test", batch_size=2)
    assert calls == [(2, AP_MIN_SCORE), (2, None), (1, AP_MIN_SCORE), (1, None)]
    assert scores["ap50"] == pytest.approx(1.0) and scores["ap"] == pytest.approx(1.0)
    assert scores["dsb"] == pytest.approx(0.5)  # one of two objects found: TP 1, FN 1 at every threshold
    assert scores["detections_per_image"] == 1.0 and scores["objects_per_image"] == 2.0 and scores["num_images"] == 3
