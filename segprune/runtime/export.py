"""Export to ONNX, verified against the Keras model before the file is put in place."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from segprune._io import atomic_path

DEFAULT_TOLERANCE = 1e-4


class ExportMismatchError(RuntimeError):
    """The exported model's outputs differ from the Keras model's beyond tolerance."""


def export_onnx(model: keras.Model, path: str | Path, tolerance: float = DEFAULT_TOLERANCE, check_size: int = 64) -> float:
    """Writes `model` as ONNX (dynamic batch and image size) and checks it against Keras.

    The exported graph is run on a random input of `check_size` x `check_size`; the file is only put at
    `path` if the largest absolute difference is within `tolerance`.

    Returns:
        The largest absolute difference measured.

    Example:
        >>> export_onnx(model, "runs/unet.onnx")
        3.8e-06
    """
    path = Path(path)
    channels = int(model.inputs[0].shape[-1])
    sample = np.random.default_rng(0).random((1, check_size, check_size, channels)).astype(np.float32)
    expected = np.asarray(model.predict(sample, verbose=0))  # export needs a model that has been called
    with atomic_path(path) as temporary:
        model.export(str(temporary), format="onnx", verbose=False)
        actual = onnx_session(temporary).run(None, {_input_name(temporary): sample})[0]
        difference = float(np.max(np.abs(actual - expected)))
        if not difference <= tolerance:
            raise ExportMismatchError(
                f"The ONNX export of {model.name!r} differs from Keras by {difference:.3g} (tolerance {tolerance:g}); "
                "the file was not written."
            )
    return difference


def onnx_session(path: str | Path, threads: int = 2):
    """An ONNX Runtime CPU session with `threads` intra-op threads and no inter-op parallelism."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle worker threads spin by default; with several sessions alive (interleaved timing) the spinning
    # threads of one steal the cores of another, and every latency comes out inflated.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _input_name(path: Path) -> str:
    return onnx_session(path).get_inputs()[0].name
