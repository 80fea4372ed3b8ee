"""`segprune export` on a Mask R-CNN file: its trunk is exported, every one of its outputs verified."""

import numpy as np
import onnxruntime

from segprune.cli import main
from segprune.models.mask_rcnn import mask_rcnn, save_mask_rcnn
from tests.models.test_mask_rcnn import TINY


def test_export_writes_the_trunk_of_a_mask_rcnn(tmp_path, capsys):
    model = mask_rcnn(**TINY)
    source, out = tmp_path / "detector.keras", tmp_path / "trunk.onnx"
    save_mask_rcnn(model, source)
    assert main(["export", str(source), "--data", "nuclei", "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"its trunk (encoder, FPN, shared RPN head; {len(model.trunk.outputs)} outputs, each verified)" in printed
    assert "over 5 input(s)" in printed  # a random batch and the 4 nuclei test tiles
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert len(session.get_outputs()) == len(model.trunk.outputs)
    image = np.random.default_rng(0).random((1, 64, 64, 1)).astype(np.float32)
    for exported, expected in zip(session.run(None, {session.get_inputs()[0].name: image}), model.trunk(image)):
        np.testing.assert_allclose(exported, np.asarray(expected), atol=1e-4)
