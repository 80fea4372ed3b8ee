"""ONNX export matches Keras; interleaved latency measurement returns figures for every model."""

import numpy as np
import pytest

from segprune import prune_channels
from segprune.models import mobilenet_unet, unet
from segprune.runtime.benchmark import onnx_latency
from segprune.runtime.export import ExportMismatchError, export_onnx, onnx_session


@pytest.mark.parametrize("build", [lambda: unet(num_classes=3, input_channels=1, base_filters=8),
                                   lambda: unet(num_classes=2, input_channels=1, base_filters=8, upsampling="bilinear"),
                                   lambda: mobilenet_unet(num_classes=2, alpha=0.35)])
def test_pruned_model_exports_to_onnx_within_1e_4(build, tmp_path):
    pruned = prune_channels(build(), ratio=0.5)
    path = tmp_path / "pruned.onnx"
    difference = export_onnx(pruned, path)
    assert difference <= 1e-4
    channels = pruned.input_shape[-1]
    sample = np.random.default_rng(1).random((2, 96, 64, channels)).astype(np.float32)
    session = onnx_session(path)
    actual = session.run(None, {session.get_inputs()[0].name: sample})[0]
    np.testing.assert_allclose(actual, pruned.predict(sample, verbose=0), atol=1e-4)


def test_export_refuses_to_write_beyond_tolerance(tmp_path):
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportMismatchError):
        export_onnx(unet(base_filters=4, depth=1), path, tolerance=-1.0)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_interleaved_latency(tmp_path):
    model = unet(base_filters=8, depth=2)
    paths = [tmp_path / "dense.onnx", tmp_path / "pruned.onnx"]
    export_onnx(model, paths[0])
    export_onnx(prune_channels(model, ratio=0.5), paths[1])
    dense, pruned = onnx_latency(paths, image_size=64, rounds=5, warmup=1)
    assert dense.runs == pruned.runs == 5
    assert dense.median_ms > 0 and pruned.median_ms > 0 and dense.p90_ms >= dense.median_ms
