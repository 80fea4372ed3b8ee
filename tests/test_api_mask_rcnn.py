"""`segprune.prune` on a Mask R-CNN: the trunk is pruned, the detector still detects, fine-tuning keeps the best mask AP."""

import numpy as np
import pytest

import segprune
from segprune.cost import flops
from segprune.models.mask_rcnn import MaskRCNN, is_mask_rcnn_file, load_mask_rcnn, mask_rcnn
from tests.fixtures import TINY_MASK_RCNN, instance_tiles


def test_half_the_channels_lowers_the_macs_and_the_detector_still_detects(tmp_path):
    model = mask_rcnn(detection_min_score=0.0, max_detections=5, **TINY_MASK_RCNN)
    dense_weights = [weight.copy() for weight in model.trunk.get_weights()]
    out = tmp_path / "pruned.keras"
    result = segprune.prune(model, "l1", ratio=0.5, round_to=1, image_size=64, checkpoint_path=out)
    pruned = result.model
    assert isinstance(pruned, MaskRCNN) and pruned.trunk is not model.trunk
    assert flops(pruned.trunk, (64, 64)).macs < 0.6 * flops(model.trunk, (64, 64)).macs
    assert result.summary.macs_ratio < 0.6
    assert [tuple(o.shape[-1:]) for o in pruned.trunk.outputs[3:]] == [tuple(o.shape[-1:]) for o in model.trunk.outputs[3:]]
    image = instance_tiles().load("a")[0][None]
    (detections,) = pruned.detect(image)
    assert detections.masks.shape[1:] == (64, 64) and len(detections) > 0
    assert is_mask_rcnn_file(out)
    (reloaded,) = load_mask_rcnn(out).detect(image)
    np.testing.assert_allclose(reloaded.boxes, detections.boxes, atol=1e-4)
    assert all(np.array_equal(before, after) for before, after in zip(dense_weights, model.trunk.get_weights(), strict=True)), \
        "the dense model is untouched"


def test_fine_tuning_keeps_the_best_validation_epoch(tmp_path):
    model = mask_rcnn(**TINY_MASK_RCNN)
    out = tmp_path / "pruned.keras"
    seen = []
    result = segprune.prune(
        model, "l1", target="flops=0.5", round_to=1, data=instance_tiles(), finetune_epochs=2, checkpoint_path=out,
        on_epoch=lambda record, fit, epochs: seen.append((record["epoch"], epochs, record["validation"])),
    )
    assert [(epoch, total) for epoch, total, _ in seen] == [(1, 2), (2, 2)]
    assert "best validation mask AP" in result.notes[0]
    saved = load_mask_rcnn(out)
    assert saved.trunk.count_params() == result.model.trunk.count_params() < model.trunk.count_params()


@pytest.mark.parametrize(
    ("method", "amount", "options", "message"),
    [
        ("greedy", {"target": "flops=0.5"}, {}, "Searching a Mask R-CNN trains on instances"),
        ("greedy", {"target": "flops=0.5"}, {"distill": segprune.DistillConfig()}, "does not take distill"),
        ("taylor", {"ratio": 0.5}, {}, "one-shot by a criterion that needs no data"),
        ("l1", {"ratio": 0.5}, {"resume": True}, "does not take resume"),
        ("l1", {"ratio": 0.5}, {"distill": segprune.DistillConfig()}, "does not take distill"),
        ("l1", {"ratio": 0.5}, {"finetune_epochs": 1}, "trains on instances"),
    ],
)
def test_what_a_mask_rcnn_cannot_do_is_refused(method, amount, options, message):
    with pytest.raises(ValueError, match=message):
        segprune.prune(mask_rcnn(**TINY_MASK_RCNN), method, **amount, **options)
