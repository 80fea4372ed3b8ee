"""Models with several outputs export and verify output by output (the Mask R-CNN trunk has nine)."""

import numpy as np
import pytest

from segprune.models.mask_rcnn import mask_rcnn
from segprune.runtime.export import ExportMismatchError, OnnxRunner, export_model, export_onnx, open_runner
from tests.fixtures import TINY_MASK_RCNN


@pytest.mark.parametrize("input_shape", [None, (1, 64, 64)])
def test_the_mask_rcnn_trunk_exports_to_onnx_every_output_matching_keras(input_shape, tmp_path):
    trunk = mask_rcnn(**TINY_MASK_RCNN).trunk
    path = tmp_path / "trunk.onnx"
    assert export_onnx(trunk, path, input_shape=input_shape) <= 1e-4
    image = np.random.default_rng(3).random((1, 64, 64, 1)).astype(np.float32)
    exported = open_runner(path).outputs(image)
    expected = trunk.predict(image, verbose=0)
    assert len(exported) == len(expected) == 9
    for actual, wanted in zip(exported, expected):
        np.testing.assert_allclose(actual, wanted, atol=1e-4)


def test_a_difference_in_any_output_refuses_the_file(tmp_path, monkeypatch):
    real = OnnxRunner.outputs

    def second_output_off(self, batch):
        outputs = real(self, batch)
        outputs[1] = outputs[1] + 1e-2
        return outputs

    monkeypatch.setattr(OnnxRunner, "outputs", second_output_off)
    path = tmp_path / "trunk.onnx"
    with pytest.raises(ExportMismatchError, match="differs from Keras by 0.01"):
        export_model(mask_rcnn(**TINY_MASK_RCNN).trunk, path, "onnx")
    assert not path.exists() and not list(tmp_path.iterdir())
