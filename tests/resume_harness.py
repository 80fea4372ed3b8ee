"""What the resume tests of every method share: a stand-in for SIGKILL, a real SIGKILL on an event, and model comparison."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest

from segprune.sparse import prunable_kernels
from segprune.sparse.model import find_weight


class Killed(BaseException):
    """Stands in for SIGKILL in-process: it escapes every handler, so nothing is cleaned up or saved on the way out."""


def kill_after(epochs: int):
    """An `on_epoch` reporter that kills the run once `epochs` epochs (over all its phases) have finished.

    `train` reports an epoch after writing its state, so what is left on disk is what a SIGKILL right after
    that epoch leaves.
    """
    seen = []

    def report(record, result, total):
        seen.append(record.epoch)
        if len(seen) == epochs:
            raise Killed

    return report


def sigkill_once(process: subprocess.Popen, happened: Callable[[], bool], event: str, timeout: float, log: Path | None = None) -> None:
    """SIGKILLs `process` as soon as `happened()` is true, and proves the signal is what ended it.

    Fails, naming `event`, when the child exits before the event, when the event does not come within `timeout`
    seconds, or when the child ends by itself before the signal lands (then it was never killed part-way).
    `log` is the file the child's stderr goes to; its end is shown when the child exits on its own.
    """

    def tail() -> str:
        return log.read_text(errors="replace")[-1500:] if log is not None and log.exists() else "(stderr not kept)"

    deadline = time.monotonic() + timeout
    while not happened():
        if process.poll() is not None:
            pytest.fail(f"the child exited with status {process.returncode} before {event}; its stderr ends:\n{tail()}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"no {event} within {timeout:.0f} s; its stderr ends:\n{tail()}")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if process.returncode != -signal.SIGKILL:
        pytest.fail(f"the child ended with status {process.returncode} before the SIGKILL after {event} landed: it ran to its end, "
                    "so nothing was killed part-way; give it more work")


def assert_same_model(resumed: keras.Model, straight: keras.Model, atol: float = 1e-4) -> None:
    """Same architecture, exactly the same zeros in every prunable kernel, weights within float tolerance."""
    assert [tuple(w.shape) for w in resumed.weights] == [tuple(w.shape) for w in straight.weights], "architectures differ"
    for site in prunable_kernels(straight):
        resumed_kernel = keras.ops.convert_to_numpy(find_weight(resumed, site.layer, site.weight))
        straight_kernel = keras.ops.convert_to_numpy(find_weight(straight, site.layer, site.weight))
        np.testing.assert_array_equal(resumed_kernel == 0, straight_kernel == 0, err_msg=f"zeros of {site.layer} differ")
    for resumed_weight, straight_weight in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(resumed_weight, straight_weight, atol=atol)


def assert_same_history(resumed_runs, straight_runs) -> None:
    assert [[r.epoch for r in run.history] for run in resumed_runs] == [[r.epoch for r in run.history] for run in straight_runs]
    resumed_dice = [r.val_dice for run in resumed_runs for r in run.history]
    np.testing.assert_allclose(resumed_dice, [r.val_dice for run in straight_runs for r in run.history], atol=1e-3)
