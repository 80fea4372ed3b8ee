"""Export from any Keras backend: TensorFlow traces in process, JAX and PyTorch hand the model to a TensorFlow child.

tf2onnx and the TFLite converter need a TensorFlow graph, which only the TensorFlow backend can trace. Under
another backend the model is saved to a temporary `.keras` (which loads under every backend) and the same
TensorFlow writer runs in a child Python started with `KERAS_BACKEND=tensorflow` (TensorFlow is always
installed); `export_model` then verifies the file against the in-process model's own outputs, so an export
that drifted on the way (a weight read wrongly across backends) is refused like any other mismatch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras

from segprune.runtime import _tensorflow

TRACING_BACKEND = "tensorflow"
CHILD_TIMEOUT_S = 900

_WRITERS = {"onnx": "write_onnx", "litert": "write_litert"}  # looked up at call time (tests replace them)


def write_onnx(model: keras.Model, path: str | Path, input_shape: Sequence[int | None]) -> None:
    """Writes `model` as ONNX (unverified), tracing with TensorFlow in this process or in a child."""
    _write("onnx", model, path, input_shape)


def write_litert(model: keras.Model, path: str | Path, input_shape: Sequence[int | None]) -> None:
    """Writes `model` as a float LiteRT `.tflite` (unverified), converting with TensorFlow here or in a child."""
    _write("litert", model, path, input_shape)


def _write(format: str, model: keras.Model, path: str | Path, input_shape: Sequence[int | None]) -> None:
    if keras.backend.backend() == TRACING_BACKEND:
        getattr(_tensorflow, _WRITERS[format])(model, path, input_shape)
        return
    with tempfile.TemporaryDirectory(prefix="segprune-export-") as folder:
        saved = Path(folder) / "model.keras"
        model.save(saved)
        _run_child(format, saved, Path(path), input_shape)


def _run_child(format: str, saved: Path, path: Path, input_shape: Sequence[int | None]) -> None:
    environment = {**os.environ, "KERAS_BACKEND": TRACING_BACKEND, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    command = [sys.executable, "-m", __name__, format, str(saved), str(path), json.dumps(list(input_shape))]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if result.returncode != 0 or not path.exists():
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise RuntimeError(
            f"The {format} export under the {keras.backend.backend()!r} backend runs TensorFlow in a child process "
            f"({sys.executable}), which failed (exit status {result.returncode}):\n{tail}"
        )


def _main(arguments: list[str]) -> None:
    format, saved, path, shape = arguments
    model = keras.saving.load_model(saved, compile=False)
    getattr(_tensorflow, _WRITERS[format])(model, path, tuple(json.loads(shape)))


if __name__ == "__main__":
    _main(sys.argv[1:])
