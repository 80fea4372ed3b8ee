"""Capping the Keras backend's CPU threads, so that timings of the Keras runtime compare with ONNX Runtime's."""

from __future__ import annotations

import os

import keras


def limit_threads(threads: int) -> str | None:
    """Caps the backend's intra-op threads at `threads`; must run before the backend executes anything.

    Returns:
        None when the threads were set, else a note saying why not and how many threads the backend runs
        with instead, for a benchmark to report next to its figures.

    Example:
        >>> note = limit_threads(2)
    """
    backend = keras.backend.backend()
    if backend not in _LIMITS:
        return f"Keras ({backend}) threads are not capped: segprune knows no thread setting for this backend."
    return _LIMITS[backend](threads)


def _tensorflow(threads: int) -> str | None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as error:  # TensorFlow already ran something: its thread pools are fixed for this process
        current = tf.config.threading.get_intra_op_parallelism_threads()
        return (
            f"Keras (TensorFlow) threads could not be set to {threads}: {error}. The figures use "
            f"{current if current else 'all available cores'} intra-op threads; benchmark the keras runtime "
            f"in a fresh process to control them."
        )
    return None


def _torch(threads: int) -> str | None:
    import torch

    torch.set_num_threads(threads)
    return None


def _jax(threads: int) -> str | None:
    # XLA reads its CPU thread pool size once, from XLA_FLAGS, when JAX starts; it cannot be changed afterwards.
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" in flags:
        return None
    return (
        f"Keras (JAX) threads could not be set to {threads}: XLA sizes its thread pool when JAX starts. The figures "
        f"use all available cores; start Python with XLA_FLAGS='--xla_cpu_multi_thread_eigen=false "
        f"intra_op_parallelism_threads={threads}' to control them."
    )


_LIMITS = {"tensorflow": _tensorflow, "torch": _torch, "jax": _jax}
