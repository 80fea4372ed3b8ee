"""Deterministic kernels, so that a candidate model scores the same in any process and after a resume."""

from __future__ import annotations

import os
import random

import keras
import numpy as np

from segprune.backend._keras_internals import reset_keras_seed


def deterministic_kernels(enable: bool = True) -> bool:
    """Switches the backend's deterministic kernels on (or off); returns whether they were on before.

    Thread scheduling otherwise changes the order of floating-point sums, and with it a candidate's score.
    TensorFlow exports only the switch-on; the switch-off and the query come from its private config
    module, read here only. PyTorch has a public switch (`torch.use_deterministic_algorithms`). JAX's CPU
    kernels are deterministic for a fixed seed (always on); on a GPU they are only with
    `XLA_FLAGS=--xla_gpu_deterministic_ops=true` set before the process starts, which cannot be switched later.

    Example:
        >>> was_on = deterministic_kernels()
        >>> ...  # score candidates
        >>> deterministic_kernels(was_on)
    """
    backend = keras.backend.backend()
    if backend not in _SWITCHES:
        raise NotImplementedError(f"Deterministic kernels are known for the {sorted(_SWITCHES)} Keras backends, not {backend!r}.")
    return _SWITCHES[backend](enable)


def _tensorflow(enable: bool) -> bool:
    from tensorflow.python.framework import config as tf_config  # only present under the TensorFlow backend

    was_on = bool(tf_config.is_op_determinism_enabled())
    if enable:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    return was_on


def _torch(enable: bool) -> bool:
    import torch

    was_on = bool(torch.are_deterministic_algorithms_enabled())
    torch.use_deterministic_algorithms(enable)
    return was_on


_JAX_GPU_FLAG = "--xla_gpu_deterministic_ops=true"


def _jax(enable: bool) -> bool:
    import jax

    if jax.default_backend() == "cpu" or _JAX_GPU_FLAG in os.environ.get("XLA_FLAGS", ""):
        return True
    if enable:
        raise RuntimeError(
            f"JAX on {jax.default_backend()!r} runs deterministic kernels only when the process starts with "
            f"XLA_FLAGS={_JAX_GPU_FLAG}; set it before starting Python (searches need it to be repeatable and resumable)."
        )
    return False


_SWITCHES = {"tensorflow": _tensorflow, "torch": _torch, "jax": _jax}


def seed_random(seed: int) -> None:
    """Seeds what a Keras fit draws from, as `keras.utils.set_random_seed` does, but leaves TensorFlow's global seed.

    `tf.random.set_seed` clears TensorFlow's caches of instantiated functions, so the next step of an
    already traced training function instantiates it again: 0.7-1.7 s on the nuclei U-Net on 2 cores
    (measured), paid once per candidate in a search and once per epoch in training. Keras layers draw from
    Keras' own seed generators through stateless ops, never from TensorFlow's global seed, so leaving that
    seed alone changes no Keras result. Other backends are seeded as `keras.utils.set_random_seed` does.

    Example:
        >>> seed_random(7)  # before each candidate's fine-tune
    """
    if keras.backend.backend() != "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    reset_keras_seed(seed)
