"""`segprune.prune` on a Mask R-CNN: the trunk is pruned, the detector still detects, fine-tuning keeps the best mask AP."""

import numpy as np
import pytest

import segprune
from segprune.cost import flops
from segprune.data.instances import InstanceDataset, instances_from_labels
from segprune.models.mask_rcnn import MaskRCNN, is_mask_rcnn_file, load_mask_rcnn, mask_rcnn
from tests.fixtures import TINY_MASK_RCNN


def _tiles() -> InstanceDataset:
    labels = np.zeros((64, 64), np.uint16)
    labels[8:20, 10:22] = 1
    labels[36:46, 30:44] = 2
    image = np.where(labels > 0, 0.8, 0.1).astype(np.float32)[..., None]
    instances = instances_from_labels(labels)
    return InstanceDataset("tiles", 2, 1, {"train": ["a", "b"], "val": ["a"], "test": ["b"]}, lambda _: (image, instances))


def test_half_the_channels_lowers_the_macs_and_the_detector_still_detects(tmp_path):
    model = mask_rcnn(detection_min_score=0.0, max_detections=5, **TINY_MASK_RCNN)
    out = tmp_path / "pruned.keras"
    result = segprune.prune(model, "l1", ratio=0.5, round_to=1, image_size=64, checkpoint_path=out)
    pruned = result.model
    assert isinstance(pruned, MaskRCNN) and pruned.trunk is not model.trunk
    assert flops(pruned.trunk, (64, 64)).macs < 0.6 * flops(model.trunk, (64, 64)).macs
    assert result.summary.macs_ratio < 0.6
    assert [tuple(o.shape[-1:]) for o in pruned.trunk.outputs[3:]] == [tuple(o.shape[-1:]) for o in model.trunk.outputs[3:]]
    image = _tiles().load("a")[0][None]
    (detections,) = pruned.detect(image)
    assert detections.masks.shape[1:] == (64, 64) and len(detections) > 0
    assert is_mask_rcnn_file(out)
    (reloaded,) = load_mask_rcnn(out).detect(image)
    np.testing.assert_allclose(reloaded.boxes, detections.boxes, atol=1e-4)
    assert len(model.detect(image)[0]) > 0  # the dense model is untouched


def test_fine_tuning_keeps_the_best_validation_epoch(tmp_path):
    model = mask_rcnn(**TINY_MASK_RCNN)
    out = tmp_path / "pruned.keras"
    seen = []
    result = segprune.prune(
        model, "l1", target="flops=0.5", round_to=1, data=_tiles(), finetune_epochs=2, checkpoint_path=out,
        on_epoch=lambda record, fit, epochs: seen.append((record["epoch"], epochs, record["validation"])),
    )
    assert [(epoch, total) for epoch, total, _ in seen] == [(1, 2), (2, 2)]
    assert "best validation mask AP" in result.notes[0] and out.exists()


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
