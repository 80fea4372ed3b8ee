"""What the resume tests of every method share: a stand-in for SIGKILL, and model comparison."""

from __future__ import annotations

import keras
import numpy as np

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
