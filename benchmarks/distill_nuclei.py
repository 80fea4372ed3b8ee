"""Does distillation from the dense model make fine-tuning after one-shot pruning recover sooner?

On the built-in nuclei tiles: prunes the dense U-Net one-shot by L1 norm to each MACs budget, then fine-tunes
a fresh copy for each epoch count, with and without distillation (the dense model as teacher), and prints
test Dice and fine-tuning seconds per cell as a markdown table. Every run has its own cosine schedule, so
"5 epochs" is a complete 5-epoch fine-tune, not the fifth epoch of a longer one.

    .venv/bin/python benchmarks/distill_nuclei.py --dense runs/unet.keras [--epochs 5,10,40] [--budgets 0.5,0.25,0.125]
"""

from __future__ import annotations

import argparse
import time

import keras

import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
from segprune import evaluate, flops, load_data, load_model, prune_channels, train
from segprune.models import unet
from segprune.training import DistillConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="nuclei")
    parser.add_argument("--dense", default=None, help="a trained model; trained here for 40 epochs when absent")
    parser.add_argument("--budgets", default="0.5,0.25,0.125", help="comma-separated shares of the dense MACs")
    parser.add_argument("--epochs", default="5,10,40", help="comma-separated fine-tuning lengths")
    parser.add_argument("--temperature", type=float, default=DistillConfig().temperature)
    parser.add_argument("--weight", type=float, default=DistillConfig().weight)
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
    epoch_counts = [int(value) for value in arguments.epochs.split(",")]
    distill = DistillConfig(arguments.temperature, arguments.weight)

    print(f"nuclei test tiles; dense U-Net Dice {dense_dice:.4f}; one-shot L1; distillation T={distill.temperature}, "
          f"weight {distill.weight}; cells: test Dice (fine-tuning seconds)")
    header = "| MACs target | MACs kept | distillation | no fine-tune | " + " | ".join(f"{n} epochs" for n in epoch_counts) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1), flush=True)
    for budget in (float(value) for value in arguments.budgets.split(",")):
        pruned = prune_channels(dense, importance="l1", target=f"flops={budget}")
        kept = flops(pruned, (256, 256)).macs / dense_macs
        untuned = evaluate(pruned, data, "test").dice
        for distilled in (False, True):
            cells = []
            for epochs in epoch_counts:
                keras.utils.set_random_seed(0)
                student = keras.models.clone_model(pruned)
                student.set_weights(pruned.get_weights())
                started = time.perf_counter()
                if distilled:
                    train(student, data, epochs=epochs, teacher=dense, distill=distill)
                else:
                    train(student, data, epochs=epochs)
                seconds = time.perf_counter() - started
                cells.append(f"{evaluate(student, data, 'test').dice:.4f} ({seconds:.0f} s)")
            print(f"| 1/{round(1 / budget)} | {kept:.3f} | {'on' if distilled else 'off'} | {untuned:.4f} | "
                  + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
