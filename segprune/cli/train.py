"""`segprune train`: train a model and keep the epoch with the best validation Dice."""

from __future__ import annotations

import argparse

from segprune import defaults as shared_defaults
from segprune.cli import _console
from segprune.cli._choices import ARCHITECTURES
from segprune.cli._common import IMAGE_SIZE_METAVAR, add_data_options, image_size_argument, read_data, refuse_mask_options

DESCRIPTION = "Train a model and save the best epoch (written atomically, Ctrl-C safe, resumable)."

MASK_RCNN = "mask-rcnn"  # instance segmentation: trained on instances/, best epoch by validation mask AP
# Mask R-CNN's own defaults where the command's are the segmentation models': 150 passes over the 10 nuclei training
# tiles at batch 4 are 450 steps (benchmarks/mask_rcnn_nuclei.py trains 400-600)
_MASK_RCNN_DEFAULTS = {"epochs": 150, "batch_size": 4, "learning_rate": 3e-3}
_SEGMENTATION_DEFAULTS = {"epochs": 40, "batch_size": 8, "learning_rate": shared_defaults.LEARNING_RATE}


def configure(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    parser.add_argument(
        "--model", default="unet", choices=sorted([*ARCHITECTURES, MASK_RCNN]),
        help="architecture (default unet; vit-segmenter: a small vision transformer, image sides multiples of 8); mask-rcnn trains an instance detector on DATA's instances/ folder",
    )
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 40; mask-rcnn 150)")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="mask-rcnn: batches per epoch (default: one pass over the training images)")
    parser.add_argument(
        "--image-size", type=image_size_argument, default=128, metavar=IMAGE_SIZE_METAVAR,
        help="training patch size, N or HxW (height x width, e.g. 128x256; default 128; mask-rcnn trains on whole images)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (default 8; mask-rcnn 4)")
    parser.add_argument("--learning-rate", type=float, default=None, help="peak Adam learning rate (default 1e-3; mask-rcnn 3e-3)")
    parser.add_argument("--patience", type=int, default=15, help="epochs without improvement before stopping (default 15; mask-rcnn runs every epoch)")
    parser.add_argument("--base-filters", type=int, default=None, help="unet/fcn: filters of the first stage (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and augmentation")
    parser.add_argument("--out", required=True, help="where to save the model (.keras); rewritten at each better epoch")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run that wrote --out")


def run(arguments: argparse.Namespace) -> int:
    import keras

    from segprune._io import check_output
    from segprune.data import BatchConfig
    from segprune.metrics import evaluate
    from segprune.models import build_model
    from segprune.training import TrainConfig, train

    out = check_output(arguments.out)
    defaults = _MASK_RCNN_DEFAULTS if arguments.model == MASK_RCNN else _SEGMENTATION_DEFAULTS
    for name, value in defaults.items():
        if getattr(arguments, name) is None:
            setattr(arguments, name, value)
    keras.utils.set_random_seed(arguments.seed)
    if arguments.model == MASK_RCNN:
        return _train_mask_rcnn(arguments, out)
    if arguments.steps_per_epoch is not None:
        raise ValueError(f"--steps-per-epoch is for --model {MASK_RCNN}; an epoch of --model {arguments.model} is one pass over its training images.")
    data = read_data(arguments)
    if arguments.base_filters is not None and arguments.model == "vit-segmenter":
        raise ValueError("--base-filters sets a CNN's first stage; the vit-segmenter is built at its default size (segprune.models.vit_segmenter in Python takes its widths).")
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
        _console.output_console.print(
            f"test Dice {scores.dice:.4f} {scores.dice_interval}  IoU {scores.iou:.4f} {scores.iou_interval}  pixel accuracy "
            f"{scores.pixel_accuracy:.4f} {scores.pixel_accuracy_interval} (95%, bootstrap over {scores.num_images} test images)", markup=False,
        )
    return 130 if result.interrupted else 0


def _train_mask_rcnn(arguments: argparse.Namespace, out) -> int:
    """Mask R-CNN from scratch on DATA's instances; every sample is read first, so a bad file stops it before anything is written."""
    from segprune.data.instances import load_instance_data
    from segprune.instance_metrics import evaluate_instances
    from segprune.models.mask_rcnn import fit_mask_rcnn, mask_rcnn

    refused = [option for option, given in (("--resume", arguments.resume), ("--base-filters", arguments.base_filters is not None)) if given]
    if refused:
        raise ValueError(f"--model {MASK_RCNN} does not take {', '.join(refused)}; run it again without.")
    refuse_mask_options(arguments, f"--model {MASK_RCNN}")
    data = load_instance_data(arguments.data, val_fraction=0.15, seed=arguments.seed)
    data.check()
    model = mask_rcnn(num_classes=data.num_classes, input_channels=data.image_channels)
    _console.progress_console.print(
        f"training Mask R-CNN ({model.count_params():,} parameters) on {data.name}: {len(data.ids('train'))} training and "
        f"{len(data.ids('val'))} validation images, {arguments.epochs} epochs, batches of {arguments.batch_size}"
    )
    result = fit_mask_rcnn(
        model, data, arguments.epochs, score=lambda detector: evaluate_instances(detector, data, "val")["ap"],
        steps_per_epoch=arguments.steps_per_epoch, batch_size=arguments.batch_size, learning_rate=arguments.learning_rate,
        seed=arguments.seed, checkpoint_path=out, on_epoch=_console.print_detector_epoch,
    )
    _console.progress_console.print(
        f"done after {len(result.history)} epochs in {result.seconds:.0f}s; best validation mask AP {result.best_score:.4f} "
        f"at epoch {result.best_epoch}; model saved to {out}"
    )
    if data.splits.get("test"):
        scores = evaluate_instances(model, data, "test")
        _console.output_console.print(
            f"test mask AP {scores['ap']:.4f}  AP50 {scores['ap50']:.4f}  AP75 {scores['ap75']:.4f}  DSB score {scores['dsb']:.4f}"
        )
    return 0
