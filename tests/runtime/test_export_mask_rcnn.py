"""`segprune export` on a Mask R-CNN file: the whole detector by default, verified against `MaskRCNN.detect`; with
--trunk-only its trunk, every one of its outputs verified."""

import numpy as np
import onnxruntime
import pytest

from segprune.cli import main
from segprune.models.mask_rcnn import mask_rcnn, save_mask_rcnn
from tests.fixtures import TINY_MASK_RCNN


def test_export_writes_the_whole_detector_of_a_mask_rcnn_verified_on_the_test_tiles(tmp_path, capsys):
    from segprune.runtime.detector_export import DetectorRunner, compare_detections

    model = mask_rcnn(detection_min_score=0.0, max_detections=6, **TINY_MASK_RCNN)
    source, out = save_mask_rcnn(model, tmp_path / "detector.keras"), tmp_path / "detector.onnx"
    assert main(["export", str(source), "--data", "nuclei", "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "the whole detector (proposals, NMS, RoIAlign" in printed and "padded to 6 per image" in printed
    assert "input fixed to 1x128x128" in printed and "a random batch and 4 test image(s)" in printed  # the nuclei tiles' size
    assert "detections on 5 image(s)" in printed and "smallest mask IoU" in printed
    images = np.random.default_rng(1).random((1, 128, 128, 1)).astype(np.float32)
    assert compare_detections(model.detect(images), DetectorRunner(out).detect(images)).mask_iou >= 0.99


def test_a_detector_pruned_with_its_heads_and_pyramid_exports_whole_and_matches_detect(tmp_path):
    """The pyramid pooled at its pruned width: RoIAlign in the graph reads the trunk's narrower levels."""
    import segprune
    from segprune.runtime.detector_export import export_detector
    from tests.graph.harness import randomize_weights

    model = mask_rcnn(detection_min_score=0.0, max_detections=6, **TINY_MASK_RCNN)
    for network in (model.trunk, model.box_head, model.mask_head):
        randomize_weights(network, seed=1)  # mask logits away from the threshold: a zero bias leaves whole masks at exactly 0.5
    pruned = segprune.prune(model, "l1", ratio=0.5, heads=0.5, pyramid=0.5, round_to=1, image_size=64, progress=False).model
    assert pruned.trunk.outputs[0].shape[-1] == 4 and pruned.mask_head.input.shape[-1] == 4
    images = list(np.random.default_rng(2).random((2, 64, 64, 1)).astype(np.float32))
    agreement = export_detector(pruned, tmp_path / "pruned.onnx", "onnx", input_shape=(1, 64, 64), samples=images)  # raises unless it matches
    assert agreement.detections > 0 and agreement.mask_iou >= 0.99, agreement


@pytest.mark.parametrize(
    ("model_kind", "options", "message"),
    [
        ("mask-rcnn", ["--format", "litert"], "A whole Mask R-CNN exports to onnx or openvino"),
        ("unet", ["--trunk-only"], "--trunk-only exports a Mask R-CNN's trunk; "),
    ],
)
def test_what_the_detector_export_cannot_do_is_refused_before_writing(tmp_path, capsys, model_kind, options, message):
    from segprune.models import unet

    source = tmp_path / "model.keras"
    if model_kind == "unet":
        unet(num_classes=2, input_channels=1, base_filters=4, depth=1).save(source)
    else:
        save_mask_rcnn(mask_rcnn(**TINY_MASK_RCNN), source)
    out = tmp_path / ("model.tflite" if "litert" in options else "model.onnx")
    assert main(["export", str(source), *options, "--out", str(out)]) == 2
    assert message in " ".join(capsys.readouterr().err.split()) and not out.exists()


def test_export_trunk_only_writes_the_trunk_of_a_mask_rcnn(tmp_path, capsys):
    model = mask_rcnn(**TINY_MASK_RCNN)
    source, out = tmp_path / "detector.keras", tmp_path / "trunk.onnx"
    save_mask_rcnn(model, source)
    assert main(["export", str(source), "--trunk-only", "--data", "nuclei", "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"its trunk (encoder, FPN, shared RPN head; {len(model.trunk.outputs)} outputs, each verified)" in printed
    assert "over 5 input(s)" in printed  # a random batch and the 4 nuclei test tiles
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert len(session.get_outputs()) == len(model.trunk.outputs)
    image = np.random.default_rng(0).random((1, 64, 64, 1)).astype(np.float32)
    for exported, expected in zip(session.run(None, {session.get_inputs()[0].name: image}), model.trunk(image)):
        np.testing.assert_allclose(exported, np.asarray(expected), atol=1e-4)


def test_benchmark_times_the_trunks_and_the_whole_detectors_of_mask_rcnn_files(tmp_path, capsys):
    import json

    import segprune
    from segprune.cost import flops
    from segprune.models import unet

    dense = mask_rcnn(**TINY_MASK_RCNN)
    pruned = segprune.prune(dense, "l1", ratio=0.5, round_to=1, image_size=64).model
    paths = [save_mask_rcnn(dense, tmp_path / "dense.keras"), save_mask_rcnn(pruned, tmp_path / "pruned.keras"), tmp_path / "unet.keras"]
    unet(base_filters=4, depth=1).save(paths[2])
    for runtime in ("onnxruntime", "keras"):
        assert main(["benchmark", *map(str, paths), "--runtime", runtime, "--image-size", "64", "--rounds", "2", "--json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [row["part"] for row in rows] == ["trunk", "trunk", "model", "detector", "detector"]  # the whole detectors last
        assert [row["model"] for row in rows[3:]] == [str(paths[0]), str(paths[1])] and [row["macs"] for row in rows[3:]] == [None, None]
        assert rows[3]["params"] == dense.count_params() and "dense.keras whole detector" in rows[3]["notes"][-1]
        assert ("verified" in rows[3]["notes"][-1]) == (runtime == "onnxruntime")  # the exported graph is checked against detect
        assert [row["macs"] for row in rows[:2]] == [flops(dense.trunk, (64, 64)).macs, flops(pruned.trunk, (64, 64)).macs]
        assert rows[1]["params"] == pruned.trunk.count_params() and all(row["latency_ms"] > 0 for row in rows)
        assert "dense.keras is a Mask R-CNN: its trunk" in " ".join(rows[0]["notes"]) and "NMS, RoIAlign" in rows[0]["notes"][-1]
        assert not any("Mask R-CNN" in note for note in rows[2]["notes"])  # a segmentation model is timed whole, as before
    assert main(["benchmark", str(paths[0]), "--image-size", "64", "--rounds", "2", "--runtime", "keras"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "dense.keras (trunk)" in printed and "dense.keras (whole detector)" in printed
