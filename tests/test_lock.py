"""One run per output: a second run on a locked output refuses, naming the PID; a dead run's lock is taken over."""

import errno
import os
import signal
import subprocess
import sys

import pytest

from segprune._io import OutputWriteError
from segprune._lock import OutputLocked, lock_path, output_lock

HOLDER = """
import sys, time
from segprune._io import OutputWriteError
from segprune._lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_lock_on_the_same_output_refuses_naming_the_holder(tmp_path):
    out = tmp_path / "runs" / "pruned.keras"
    with output_lock(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        with pytest.raises(OutputLocked, match=rf"PID {os.getpid()}\).*pruned.keras"):
            with output_lock(out):
                pass
        with output_lock(tmp_path / "runs" / "other.keras"):  # another output is another lock
            pass
    assert not (tmp_path / "runs").exists()  # the lock and the folder made for it are gone


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "sweep"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(OutputLocked, match=f"PID {holder.pid}"):
            with output_lock(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(out).read_text().strip() == str(holder.pid)  # left behind by the killed run
    with output_lock(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
    assert not lock_path(out).exists()


def test_a_second_command_on_a_locked_output_refuses_before_any_work(tmp_path, capsys):
    from segprune.cli import main
    from tests.models.test_checks import tiny_model

    model, out = tmp_path / "model.keras", tmp_path / "pruned.keras"
    tiny_model().save(model)
    with output_lock(out):
        assert main(["prune", str(model), "--ratio", "0.5", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"Another segprune run (PID {os.getpid()}) is writing {str(out)!r}" in error and error.count("\n") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.keras"]


def test_a_lock_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "ftruncate", disk_full)
    with pytest.raises(OutputWriteError, match=r"Cannot write '.*\.out\.keras\.lock': no space left on the device"):
        with output_lock(tmp_path / "new" / "out.keras"):
            pass
    assert list(tmp_path.iterdir()) == []
