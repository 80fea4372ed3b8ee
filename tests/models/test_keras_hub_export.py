"""Pruned keras-hub DeepLabV3 and SegFormer export to ONNX and run in ONNX Runtime as they do in Keras."""

import numpy as np
import pytest

from segprune import prune_channels
from segprune.runtime.export import export_onnx, onnx_session

pytest.importorskip("keras_hub")
from tests.graph.test_keras_hub import _deeplab, segformer  # after the skip: it imports keras_hub


@pytest.mark.parametrize("build", [_deeplab, segformer], ids=["deeplab_v3", "segformer"])
def test_pruned_keras_hub_segmenter_exports_to_onnx_within_1e_4(build, tmp_path):
    model = build()
    pruned = prune_channels(model, ratio=0.5, round_to=1)
    path = tmp_path / "pruned.onnx"
    assert export_onnx(pruned, path, tolerance=1e-4) <= 1e-4
    sample = np.random.default_rng(1).random((1, *model.inputs[0].shape[1:])).astype(np.float32)
    session = onnx_session(path)
    (output,) = session.run(None, {session.get_inputs()[0].name: sample})
    np.testing.assert_allclose(output, pruned.predict(sample, verbose=0), atol=1e-4, rtol=0)
