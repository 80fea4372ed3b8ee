"""One-shot channel pruning on the real nuclei data: Dice and measured ONNX Runtime speed-up.

Trains the default U-Net (or takes --dense), prunes it one-shot to a budget with an importance criterion,
fine-tunes, and times dense and pruned models side by side on ONNX Runtime (1x256x256, 2 threads).

    .venv/bin/python benchmarks/prune_nuclei.py [--dense runs/unet.keras] [--targets flops=0.25,flops=0.125]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import keras

import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
from segprune import evaluate, flops, load_data, load_model, train
from segprune.models import unet
from segprune.runtime.benchmark import onnx_latency
from segprune.runtime.export import export_onnx
from segprune.structured.oneshot import prune_channels

NUCLEI = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "nuclei-dsb2018"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(NUCLEI))
    parser.add_argument("--dense", default=None, help="a trained model; trained here with the defaults when absent")
    parser.add_argument("--targets", default="flops=0.25", help="comma-separated budgets")
    parser.add_argument("--methods", default="l1", help="comma-separated importance criteria")
    parser.add_argument("--finetune-epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()

    data = load_data(arguments.data)
    keras.utils.set_random_seed(0)
    if arguments.dense:
        dense = load_model(arguments.dense)
    else:
        dense = unet(num_classes=data.num_classes, input_channels=data.image_channels)
        train(dense, data, epochs=40)
    dense_dice = evaluate(dense, data, "test").dice
    dense_macs = flops(dense, (256, 256)).macs

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(dense, Path(folder) / "dense.onnx")
        candidates = []
        for target in arguments.targets.split(","):
            for method in arguments.methods.split(","):
                keras.utils.set_random_seed(0)
                pruned = prune_channels(dense, importance=method, target=target, data=data)
                started = time.perf_counter()
                result = train(pruned, data, epochs=arguments.finetune_epochs)
                seconds = time.perf_counter() - started
                path = Path(folder) / f"{method}-{target}.onnx"
                export_onnx(pruned, path)
                candidates.append((method, target, pruned, result, seconds, path))
        latencies = onnx_latency([Path(folder) / "dense.onnx", *(c[-1] for c in candidates)], threads=arguments.threads)
        dense_ms = latencies[0].median_ms
        rows.append(("dense", "-", 1.0, dense_dice, dense_ms, 1.0, 0.0))
        for (method, target, pruned, _result, seconds, _), latency in zip(candidates, latencies[1:]):
            macs_ratio = flops(pruned, (256, 256)).macs / dense_macs
            dice = evaluate(pruned, data, "test").dice
            rows.append((f"one-shot {method}", target, macs_ratio, dice, latency.median_ms, dense_ms / latency.median_ms, seconds))

    print(f"nuclei test tiles, ONNX Runtime 1x256x256, {arguments.threads} threads, median of interleaved runs")
    print(f"{'method':<18}{'target':<14}{'MACs':>7}{'Dice':>8}{'ms':>9}{'speed-up':>10}{'fine-tune s':>13}")
    for method, target, macs_ratio, dice, ms, speedup, seconds in rows:
        print(f"{method:<18}{target:<14}{macs_ratio:>7.3f}{dice:>8.4f}{ms:>9.2f}{speedup:>9.2f}x{seconds:>13.0f}")


if __name__ == "__main__":
    main()
