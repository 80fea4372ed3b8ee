"""Export to ONNX or LiteRT, verified against the Keras model before the file is put in place."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from segprune._io import atomic_path
from segprune.runtime import _tensorflow

DEFAULT_TOLERANCE = 1e-4
FORMATS = {"onnx": ".onnx", "litert": ".tflite"}


class ExportMismatchError(RuntimeError):
    """The exported model's outputs differ from the Keras model's beyond tolerance."""


def export_model(
    model: keras.Model,
    path: str | Path,
    format: str = "onnx",
    tolerance: float = DEFAULT_TOLERANCE,
    samples: Sequence[np.ndarray] = (),
    check_size: int = 64,
) -> float:
    """Writes `model` as ONNX or LiteRT (dynamic batch and image size) and checks it against Keras.

    The graph is traced with `training=False` explicitly (Keras's own export leaves the flag unset, and
    BatchNormalization after a Resizing then exports in training mode). The exported model runs on a random input of `check_size` x `check_size` and on every array in
    `samples` (real images, (H, W, C) in [0, 1]); the file is only put at `path` when the largest absolute
    difference from Keras is within `tolerance`.

    Returns:
        The largest absolute difference measured.

    Example:
        >>> export_model(model, "runs/unet.tflite", format="litert")
        2.1e-06
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {list(FORMATS)}.")
    path = Path(path)
    channels = int(model.inputs[0].shape[-1])
    inputs = [np.random.default_rng(0).random((1, check_size, check_size, channels)).astype(np.float32)]
    inputs += [np.asarray(sample, dtype=np.float32)[None] for sample in samples]
    expected = [np.asarray(model.predict(x, verbose=0)) for x in inputs]  # export needs a called model
    with atomic_path(path) as temporary, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="In the future `np.object`", category=FutureWarning)
        _write(model, temporary, format, (None, None, None, channels))
        runner = open_runner(temporary, threads=2)
        difference = max(float(np.max(np.abs(runner(x) - y))) for x, y in zip(inputs, expected))
        if not difference <= tolerance:
            raise ExportMismatchError(
                f"The {format} export of {model.name!r} differs from Keras by {difference:.3g} "
                f"(tolerance {tolerance:g}); the file was not written."
            )
    return difference


def _write(model: keras.Model, path: Path, format: str, input_shape: tuple) -> None:
    if format == "onnx":
        _tensorflow.write_onnx(model, path, input_shape)
    else:  # Keras's LiteRT export calls the model with training=False itself
        model.export(str(path), format="litert", verbose=False, input_signature=[keras.InputSpec(shape=input_shape, dtype="float32")])


def export_onnx(model: keras.Model, path: str | Path, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """`export_model` with `format="onnx"`."""
    return export_model(model, path, "onnx", tolerance)


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


class OnnxRunner:
    """Runs an ONNX file on ONNX Runtime: `runner(batch) -> output`."""

    def __init__(self, path: str | Path, threads: int) -> None:
        self.session = onnx_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class LiteRTRunner:
    """Runs a `.tflite` file on the LiteRT interpreter (XNNPACK), resizing its input to each batch shape."""

    def __init__(self, path: str | Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.shape: tuple[int, ...] | None = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self.shape:
            self.interpreter.resize_tensor_input(self.input, list(batch.shape))
            self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)


def open_runner(path: str | Path, threads: int = 2):
    """A callable that runs an exported model file, chosen by its suffix."""
    suffix = Path(path).suffix
    if suffix == ".onnx":
        return OnnxRunner(path, threads)
    if suffix == ".tflite":
        return LiteRTRunner(path, threads)
    raise ValueError(f"Cannot run {str(path)!r}: expected a .onnx or .tflite file.")
