"""Atomic writes: a failure leaves the existing file untouched and no temporary file behind, and says why in one line."""

import errno
import os
import subprocess
import tempfile
from pathlib import Path

import keras
import pytest

from segprune._io import OutputWriteError, atomic_path, check_output, save_model, write_text
from segprune.models import unet


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_save_model_requires_keras_suffix(tmp_path):
    with pytest.raises(ValueError, match=".keras"):
        save_model(unet(base_filters=4, depth=1), tmp_path / "model.h5")


@pytest.mark.parametrize(
    "code,cause",
    [(errno.ENOSPC, "no space left on the device (ENOSPC)"), (errno.EACCES, "permission denied (EACCES)"), (errno.EROFS, "read-only (EROFS)")],
)
def test_a_failed_write_is_one_line_naming_the_path_and_leaves_nothing_half_written(tmp_path, code, cause):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(OutputWriteError) as raised:
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise OSError(code, os.strerror(code))
    assert str(raised.value).startswith(f"Cannot write {str(target)!r}: ") and cause in str(raised.value) and "\n" not in str(raised.value)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_failure_to_create_the_temporary_file_names_the_path(tmp_path, monkeypatch):
    def refuse(**_):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputWriteError, match=r"Cannot write '.*result.txt': permission denied"):
        write_text(tmp_path / "result.txt", "text")


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError, match="an input"):
        with atomic_path(tmp_path / "result.txt"):
            raise FileNotFoundError("an input the writer reads is missing")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_in_the_way_is_refused_before_any_work(tmp_path):
    (tmp_path / "model.keras").mkdir()
    with pytest.raises(OutputWriteError, match="it is a directory"):
        check_output(tmp_path / "model.keras")
    with pytest.raises(OutputWriteError, match="it is a directory"):
        write_text(tmp_path / "model.keras", "text")


def test_prune_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    from segprune.cli import main
    from tests.models.test_checks import tiny_model

    model, out = tmp_path / "model.keras", tmp_path / "full" / "pruned.keras"
    tiny_model().save(model)

    def disk_fills(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", disk_fills)
    assert main(["prune", str(model), "--ratio", "0.5", "--out", str(out)]) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith(f"error: Cannot write {str(out)!r}: no space left on the device (ENOSPC)")
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["model.keras"]  # no half file, temporary, lock or folder


def test_a_real_full_file_system(tmp_path):
    """A 64 KiB tmpfs filled up (where this machine lets the tests mount one): the write fails as the injected ones do."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with pytest.raises(OutputWriteError, match="no space left on the device"):
            write_text(mount / "report.html", "x" * 200_000)
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)
