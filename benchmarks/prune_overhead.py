"""How long structural pruning itself takes: graph building and surgery (goal: U-Net < 1 s, ResNet50 < 10 s).

    .venv/bin/python benchmarks/prune_overhead.py
"""

from __future__ import annotations

import time

import keras

import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
from segprune.graph.groups import build_channel_graph
from segprune.graph.surgery import remove_channels
from segprune.models import unet
from segprune.structured.importance import channel_importance
from segprune.structured.selection import UniformRatio

REPEATS = 3


def measure(name: str, model: keras.Model) -> None:
    graph_seconds, surgery_seconds = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        graph = build_channel_graph(model)
        graph_seconds.append(time.perf_counter() - started)
        removed = UniformRatio(0.5).select(graph, channel_importance(graph, "l1"), round_to=8)
        started = time.perf_counter()
        remove_channels(graph, removed)
        surgery_seconds.append(time.perf_counter() - started)
    graph_time, surgery_time = min(graph_seconds), min(surgery_seconds)
    print(f"{name:<14} {model.count_params():>12,} params  graph {graph_time:6.2f} s  surgery {surgery_time:6.2f} s  "
          f"total {graph_time + surgery_time:6.2f} s  (best of {REPEATS})")


def main() -> None:
    measure("default U-Net", unet(num_classes=2, input_channels=1))
    measure("ResNet50", keras.applications.ResNet50(weights=None))


if __name__ == "__main__":
    main()
