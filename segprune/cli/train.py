"""`segprune train`: train a model and keep the epoch with the best validation Dice."""

from __future__ import annotations

import argparse

import keras

from segprune._io import check_output
from segprune.cli import _console
from segprune.cli._common import DATA_HELP, USER_ERRORS  # noqa: F401  (USER_ERRORS is read by segprune.cli.main)
from segprune.data import BatchConfig, load_data
from segprune.metrics import evaluate
from segprune.models import ARCHITECTURES, build_model
from segprune.training import TrainConfig, train

DESCRIPTION = "Train a model and save the best epoch (written atomically, Ctrl-C safe, resumable)."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="nuclei", help=DATA_HELP)
    parser.add_argument("--model", default="unet", choices=sorted(ARCHITECTURES), help="architecture (default unet)")
    parser.add_argument("--epochs", type=int, default=40, help="maximum epochs (default 40)")
    parser.add_argument("--image-size", type=int, default=128, help="training patch size (default 128)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak Adam learning rate (default 1e-3)")
    parser.add_argument("--patience", type=int, default=15, help="epochs without improvement before stopping (default 15)")
    parser.add_argument("--base-filters", type=int, default=None, help="unet/fcn: filters of the first stage (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and augmentation")
    parser.add_argument("--out", required=True, help="where to save the model (.keras); rewritten at each better epoch")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run that wrote --out")


def run(arguments: argparse.Namespace) -> int:
    out = check_output(arguments.out)
    keras.utils.set_random_seed(arguments.seed)
    data = load_data(arguments.data)
    options = {} if arguments.base_filters is None else {"base_filters": arguments.base_filters}
    model = build_model(arguments.model, data.num_classes, data.image_channels, **options)
    config = TrainConfig(
        learning_rate=arguments.learning_rate,
        patience=arguments.patience,
        batches=BatchConfig(batch_size=arguments.batch_size, image_size=arguments.image_size, seed=arguments.seed),
    )
    _console.progress_console.print(
        f"training {model.name} ({model.count_params():,} parameters) on {data.name}: "
        f"{len(data.ids('train'))} training and {len(data.ids('val'))} validation images"
    )
    result = train(model, data, arguments.epochs, config, checkpoint_path=out, on_epoch=_console.print_epoch, resume=arguments.resume)
    if result.interrupted:
        _console.progress_console.print("interrupted: run the same command with --resume to continue")
    ending = "interrupted" if result.interrupted else ("stopped early" if result.stopped_early else "done")
    _console.progress_console.print(
        f"{ending} after {len(result.history)} epochs in {result.seconds:.0f}s; best validation Dice "
        f"{result.best_val_dice:.4f} at epoch {result.best_epoch}; model saved to {out}"
    )
    if data.splits.get("test"):
        scores = evaluate(model, data, "test")
        _console.output_console.print(f"test Dice {scores.dice:.4f}  IoU {scores.iou:.4f}  pixel accuracy {scores.pixel_accuracy:.4f}")
    return 130 if result.interrupted else 0
