"""Deterministic kernels, so that a candidate model scores the same in any process and after a resume."""

from __future__ import annotations

import keras


def deterministic_kernels(enable: bool = True) -> bool:
    """Switches the backend's deterministic kernels on (or off); returns whether they were on before.

    Thread scheduling otherwise changes the order of floating-point sums, and with it a candidate's score.
    TensorFlow exports only the switch-on; the switch-off and the query come from its private config
    module, read here only. JAX on CPU and PyTorch's CPU kernels used here are deterministic for a fixed
    seed, so there is nothing to switch (reported as off).
    """
    if keras.backend.backend() != "tensorflow":
        return False
    from tensorflow.python.framework import config as tf_config  # only present under the TensorFlow backend

    was_on = bool(tf_config.is_op_determinism_enabled())
    if enable:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    return was_on
