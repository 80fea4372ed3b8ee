"""Export works under every Keras backend: JAX and PyTorch hand the model to a TensorFlow child process."""

import keras
import numpy as np
import pytest

from segprune import prune_channels
from segprune.backend.capabilities import BackendUnsupported
from segprune.models import unet
from segprune.runtime import _tensorflow
from segprune.runtime.export import export_model, open_runner


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("litert", ".tflite")])
def test_export_under_the_running_backend_matches_its_own_outputs(fmt, suffix, tmp_path):
    model = prune_channels(unet(num_classes=2, input_channels=1, base_filters=4, depth=2), ratio=0.5)
    path = tmp_path / f"pruned{suffix}"
    assert export_model(model, path, fmt) <= 1e-4
    sample = np.random.default_rng(1).random((2, 48, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(open_runner(path)(sample), keras.ops.convert_to_numpy(model(sample, training=False)), atol=1e-4)
    assert sorted(item.name for item in tmp_path.iterdir()) == [path.name]  # no staging or .keras left behind


def test_a_wrong_foreign_export_is_refused_by_the_verification(tmp_path, monkeypatch):
    """The file written from the saved copy is checked against the in-process model, not against the copy."""
    from segprune.runtime import _foreign
    from segprune.runtime.export import ExportMismatchError

    model = unet(num_classes=2, input_channels=1, base_filters=4, depth=1)
    other = unet(num_classes=2, input_channels=1, base_filters=4, depth=1)
    writer = _foreign.write_onnx
    monkeypatch.setattr(_foreign, "write_onnx", lambda _, path, shape: writer(other, path, shape))
    with pytest.raises(ExportMismatchError):
        export_model(model, tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="the TensorFlow backend calibrates in process")
def test_int8_litert_is_refused_in_one_line_off_tensorflow(tmp_path):
    model = unet(num_classes=2, input_channels=1, base_filters=4, depth=1)
    with pytest.raises(BackendUnsupported, match="KERAS_BACKEND=tensorflow"):
        _tensorflow.write_litert_int8(model, tmp_path / "int8.tflite", (1, 32, 32, 1), [])
    from segprune.runtime.quantize import quantize

    with pytest.raises(BackendUnsupported, match="KERAS_BACKEND=tensorflow"):  # before loading data or exporting anything
        quantize(model, tmp_path / "no-such-dataset", "litert", out=tmp_path / "int8.tflite")
    assert not list(tmp_path.iterdir())
