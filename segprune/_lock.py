"""One run per output: a lock file beside it, held with `flock` while the run lasts.

The kernel releases an `flock` when its process dies, however it dies, so a lock file left behind by a killed
run holds no lock: the next run takes it over. The file holds the PID of the run that holds it, for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from segprune._io import OutputWriteError


class OutputLocked(RuntimeError):
    """Another run is writing the same output."""


def lock_path(output: str | Path) -> Path:
    """`runs/unet.keras` -> `runs/.unet.keras.lock` (for a folder output too: `runs/sweep` -> `runs/.sweep.lock`)."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


@contextlib.contextmanager
def output_lock(output: str | Path | None) -> Iterator[None]:
    """Holds the lock of `output` (and so of what a run keeps beside it: OUT.resume/, OUT.search/) until the block ends.

    Raises:
        OutputLocked: A running process holds it; the message names its PID.
        OutputWriteError: The lock cannot be created there (permission denied, a read-only file system...).

    Example:
        >>> with output_lock("runs/unet-pruned.keras"):
        ...     segprune.prune(model, "l1", ratio=0.5).model.save("runs/unet-pruned.keras")
    """
    if output is None:
        yield
        return
    path = lock_path(output)
    created = _missing_folders(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = _acquire(path, output)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # before the lock is released: a run that opened the old file retries
        os.close(handle)
        _remove_empty(created)


def _acquire(path: Path, output: str | Path) -> int:
    while True:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputWriteError.of(path, error) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 64).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            raise OutputLocked(
                f"Another segprune run (PID {holder}) is writing {str(output)!r} (it holds {str(path)!r}); wait for it to finish "
                "or stop it, or choose another --out."
            ) from None
        if _same_file(handle, path):  # not unlinked by the run that held it just before
            break
        os.close(handle)
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
    except OSError as error:  # a full disk, most likely: the run could not write its output either
        path.unlink(missing_ok=True)
        os.close(handle)
        raise OutputWriteError.of(path, error) from None
    return handle


def _same_file(handle: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle).st_ino
    except FileNotFoundError:
        return False


def _missing_folders(folder: Path) -> list[Path]:
    """The folders `mkdir(parents=True)` would create for `folder`, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # the run wrote into it (or something else did): it stays
            return
