"""Training throughput of the default U-Net at 128x128, and whether the data pipeline keeps up.

Prints images/s for `model.fit` on the synthetic data (after a warm-up epoch) and for the batch
pipeline alone; the pipeline must be several times faster than training or it stalls the fit.

    .venv/bin/python benchmarks/train_throughput.py [--epochs 3] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import time

import keras

import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
from segprune.data import BatchConfig, TrainingBatches, synthetic_dataset
from segprune.losses import CrossEntropyDiceLoss
from segprune.models import output_kind, unet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=128)
    arguments = parser.parse_args()

    keras.utils.set_random_seed(0)
    data = synthetic_dataset(image_size=arguments.image_size)
    config = BatchConfig(batch_size=arguments.batch_size, image_size=arguments.image_size)
    batches = TrainingBatches(data, "train", data.image_channels, config)
    for index in range(len(batches)):  # fill the sample cache so both timings see the same data cost
        batches[index]

    started = time.perf_counter()
    for index in range(len(batches)):
        batches[index]
    pipeline_rate = len(batches) * config.batch_size / (time.perf_counter() - started)

    model = unet(num_classes=data.num_classes, input_channels=data.image_channels)
    model.compile(optimizer="adam", loss=CrossEntropyDiceLoss(output_kind(model)))
    model.fit(batches, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(batches, epochs=arguments.epochs, verbose=0)
    seconds = time.perf_counter() - started
    train_rate = arguments.epochs * len(batches) * config.batch_size / seconds

    print(f"machine: {os.cpu_count()} CPU cores, Keras {keras.__version__} ({keras.backend.backend()})")
    print(f"model: default U-Net, {model.count_params():,} parameters, batch {config.batch_size}, "
          f"{arguments.image_size}x{arguments.image_size}x{data.image_channels}")
    print(f"training:          {train_rate:8.1f} images/s  ({1000 * seconds / (arguments.epochs * len(batches)):.1f} ms/step)")
    print(f"pipeline alone:    {pipeline_rate:8.1f} images/s  ({pipeline_rate / train_rate:.1f}x training)")


if __name__ == "__main__":
    main()
