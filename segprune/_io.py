"""Writing files so that a crash never leaves a half-written or overwritten user file behind.

Importing it starts no framework (the command line's output lock builds on it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    import keras

# A write that failed for one of these reasons is the user's to fix: each with what it means, and what to do.
_WRITE_FAILURES = {
    errno.ENOSPC: ("no space left on the device", "free some space there or write elsewhere"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space there or write elsewhere"),
    errno.EFBIG: ("the file is larger than the file system allows", "write elsewhere"),
    errno.EACCES: ("permission denied", "write to a folder you may write in"),
    errno.EPERM: ("operation not permitted", "write to a folder you may write in"),
    errno.EROFS: ("the file system is read-only", "write to a writable file system"),
    errno.EISDIR: ("it is a directory", "give a file path inside it instead"),
}


class OutputWriteError(OSError):
    """A file could not be written (no space, permission denied, a read-only file system, a directory in the way).

    Nothing half-written is left: the temporary file is removed and an existing file at the path is unchanged.
    """

    @classmethod
    def of(cls, path: str | Path, error: OSError) -> OSError:
        """`error` as a one-line `OutputWriteError` naming `path`, when it is a write failure; else `error` itself."""
        code = _errno_of(error)
        if code not in _WRITE_FAILURES:
            return error
        cause, fix = _WRITE_FAILURES[code]
        return cls(code, f"Cannot write {str(path)!r}: {cause} ({errno.errorcode[code]}); {fix}. Nothing was half-written.")

    def __str__(self) -> str:
        return self.strerror


def _errno_of(error: OSError) -> int | None:
    if error.errno is not None:
        return error.errno
    found = re.search(r"errno = (\d+)", str(error))  # h5py's errors carry the C errno in their text only
    return int(found.group(1)) if found else None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path` (same suffix); on success it is renamed onto `path`.

    On an exception the temporary file is removed and `path` is left as it was; a write failure (no space,
    permission denied, a read-only file system, `path` a directory) is raised as `OutputWriteError` naming `path`.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as error:
        raise OutputWriteError.of(path, error) from error
    os.close(handle)
    os.unlink(temporary)  # some writers (h5py, zip) refuse an existing empty file
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.replace(temporary_path, path)
    except OutputWriteError:
        raise
    except OSError as error:
        raise OutputWriteError.of(path, error) from error
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
    from segprune.backend._keras_internals import rebuilt_copy

    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Models are saved in the Keras 3 format; the path must end in .keras, got {str(path)!r}.")
    plain = rebuilt_copy(model) if model.compiled else model
    with atomic_path(path) as temporary:
        plain.save(temporary)
    return path


def check_output(output: str | Path, *inputs: str | Path, suffix: str | None = ".keras") -> Path:
    """Checks, before any work starts, that `output` can be written as asked; returns it as a Path.

    Raises when its suffix is not `suffix` (None accepts any), when it is one of `inputs` (segprune never
    writes over the file it reads) or a directory, or when its folder cannot be written.
    """
    path = Path(output)
    if path.is_dir():
        raise OutputWriteError.of(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    _check_writable(path.parent)
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


def _check_writable(folder: Path) -> None:
    """Raises `OutputWriteError` if files cannot be created in `folder` (or, not there yet, in the folder that would hold it)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if os.access(folder, os.W_OK):
        return
    read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    code = errno.EROFS if read_only else errno.EACCES
    raise OutputWriteError.of(folder, OSError(code, os.strerror(code)))
