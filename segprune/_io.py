"""Writing files so that a crash never leaves a half-written or overwritten user file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import keras

from segprune.backend._keras_internals import rebuilt_copy


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path` (same suffix); on success it is renamed onto `path`.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    os.unlink(temporary)  # some writers (h5py, zip) refuse an existing empty file
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Saves a plain copy of `model` (no optimizer, loss or compile settings) atomically as `.keras`.

    A model compiled with segprune's loss would otherwise need segprune to load; the saved file opens
    with `keras.saving.load_model` alone.

    Example:
        >>> save_model(model, "runs/unet.keras")
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Models are saved in the Keras 3 format; the path must end in .keras, got {str(path)!r}.")
    plain = rebuilt_copy(model) if model.compiled else model
    with atomic_path(path) as temporary:
        plain.save(temporary)
    return path


def check_output(output: str | Path, *inputs: str | Path, suffix: str | None = ".keras") -> Path:
    """Checks, before any work starts, that `output` can be written as asked; returns it as a Path.

    Raises when its suffix is not `suffix` (None accepts any) or when it is one of `inputs`: segprune never
    writes over the file it reads.
    """
    path = Path(output)
    if suffix is not None and path.suffix != suffix:
        raise ValueError(f"The output must end in {suffix}, got {str(path)!r}; for example {str(path.with_suffix(suffix))!r}.")
    refuse_overwrite(path, *inputs)
    return path


def refuse_overwrite(output: str | Path, *inputs: str | Path) -> None:
    """Raises if `output` is one of `inputs`: segprune never writes over the file it reads."""
    output_path = Path(output).resolve()
    for source in inputs:
        if Path(source).resolve() == output_path:
            raise ValueError(f"--out {str(output)!r} is the input model; choose another path so the input is kept.")
