"""The same one-shot prune and fine-tune on nuclei under each Keras backend: time, Dice, exported latency.

Each backend runs in its own process (a process has one Keras backend): it loads the dense model, prunes it
one-shot (L1) to the target, fine-tunes, scores the test split and saves the pruned model. This process
(TensorFlow, which the ONNX export goes through) then exports every backend's pruned model and times them
on ONNX Runtime side by side. Needs a Python with all three backends (`pip install -e '.[jax,torch]'`).

    python benchmarks/backends.py --dense runs/unet.keras [--backends tensorflow,jax,torch] [--epochs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUCLEI = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "nuclei-dsb2018"
BACKENDS = ("tensorflow", "jax", "torch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(NUCLEI))
    parser.add_argument("--dense", required=True, help="a trained model (.keras) that every backend prunes")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--target", default="flops=0.25")
    parser.add_argument("--epochs", type=int, default=40, help="fine-tuning epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: the JSON file one backend writes
    arguments = parser.parse_args()
    if arguments.worker:
        _run_one_backend(arguments)
        return
    backends = [name.strip() for name in arguments.backends.split(",") if name.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {list(BACKENDS)}")
    os.environ["KERAS_BACKEND"] = "tensorflow"  # this process exports: through TensorFlow
    with tempfile.TemporaryDirectory() as folder:
        rows = [_spawn(backend, arguments, Path(folder)) for backend in backends]
        latencies = _export_and_time([Path(row["model"]) for row in rows], Path(folder), arguments.threads)
    print(f"nuclei, one-shot L1 to {arguments.target}, {arguments.epochs} fine-tune epochs; ONNX Runtime 1x256x256, {arguments.threads} threads")
    print(f"{'backend':<12}{'prune s':>9}{'s/epoch':>9}{'Dice':>8}{'ONNX ms':>9}")
    for row, milliseconds in zip(rows, latencies):
        print(f"{row['backend']:<12}{row['prune_seconds']:>9.2f}{row['seconds_per_epoch']:>9.2f}{row['dice']:>8.4f}{milliseconds:>9.2f}")


def _spawn(backend: str, arguments, folder: Path) -> dict:
    output = folder / f"{backend}.json"
    command = [
        sys.executable, __file__, "--worker", str(output), "--data", arguments.data, "--dense", arguments.dense,
        "--target", arguments.target, "--epochs", str(arguments.epochs),
    ]
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(command, env=environment, check=True)
    return json.loads(output.read_text())


def _run_one_backend(arguments) -> None:
    import keras

    import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
    from segprune import evaluate, load_data, load_model, train
    from segprune.structured.oneshot import prune_channels

    data = load_data(arguments.data)
    dense = load_model(arguments.dense)
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    pruned = prune_channels(dense, importance="l1", target=arguments.target)
    prune_seconds = time.perf_counter() - started
    result = train(pruned, data, epochs=arguments.epochs)
    model_path = Path(arguments.worker).with_suffix(".keras")
    pruned.save(model_path)
    row = {
        "backend": keras.backend.backend(),
        "prune_seconds": prune_seconds,
        "seconds_per_epoch": sum(record.seconds for record in result.history) / max(1, len(result.history)),
        "dice": evaluate(pruned, data, "test").dice,
        "model": str(model_path),
    }
    Path(arguments.worker).write_text(json.dumps(row))


def _export_and_time(model_paths: list[Path], folder: Path, threads: int) -> list[float]:
    import segprune  # noqa: F401
    from segprune import load_model
    from segprune.runtime.benchmark import onnx_latency
    from segprune.runtime.export import export_onnx

    onnx_paths = []
    for path in model_paths:
        onnx_path = folder / f"{path.stem}.onnx"
        export_onnx(load_model(path), onnx_path)
        onnx_paths.append(onnx_path)
    return [latency.median_ms for latency in onnx_latency(onnx_paths, threads=threads)]


if __name__ == "__main__":
    main()
