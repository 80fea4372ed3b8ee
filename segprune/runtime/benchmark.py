"""Latency measured side by side: several models timed in interleaved rounds on the same input."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segprune.runtime.export import onnx_session


@dataclass(frozen=True)
class Latency:
    model: str
    median_ms: float
    p90_ms: float
    runs: int


def onnx_latency(
    paths: list[str | Path],
    image_size: int = 256,
    batch: int = 1,
    threads: int = 2,
    rounds: int = 30,
    warmup: int = 5,
) -> list[Latency]:
    """Median and 90th-percentile latency of ONNX models on ONNX Runtime (CPU), interleaved.

    Each round runs every model once, in turn, so that machine noise hits them alike and their ratios
    are fair.

    Example:
        >>> dense, pruned = onnx_latency(["dense.onnx", "pruned.onnx"])
        >>> dense.median_ms / pruned.median_ms
        3.4
    """
    sessions = [onnx_session(path, threads) for path in paths]
    feeds = []
    for session in sessions:
        spec = session.get_inputs()[0]
        channels = spec.shape[-1] if isinstance(spec.shape[-1], int) else 3
        sample = np.random.default_rng(0).random((batch, image_size, image_size, channels)).astype(np.float32)
        feeds.append({spec.name: sample})
    for _ in range(warmup):
        for session, feed in zip(sessions, feeds):
            session.run(None, feed)
    timings = [[] for _ in sessions]
    for _ in range(rounds):
        for index, (session, feed) in enumerate(zip(sessions, feeds)):
            started = time.perf_counter()
            session.run(None, feed)
            timings[index].append(1000 * (time.perf_counter() - started))
    return [
        Latency(str(path), float(np.median(times)), float(np.percentile(times, 90)), len(times))
        for path, times in zip(paths, timings)
    ]
