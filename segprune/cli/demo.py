"""`segprune demo`: the main job on the built-in data (what `make demo` runs)."""

from __future__ import annotations

import argparse

from segprune.cli import _console
from segprune.cli._choices import DEMO_EPOCHS, DEMO_MASK_RCNN_EPOCHS
from segprune.cli._common import print_balance

DESCRIPTION = "Train a U-Net on the built-in nuclei tiles, prune it, time every model, write the report."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"training epochs (default {DEMO_EPOCHS})")
    parser.add_argument(
        "--mask-rcnn", default=None, metavar="FILE",
        help="a trained Mask R-CNN (segprune train --model mask-rcnn): adds its instance rows, dense and pruned by l1 to half the "
        f"trunk MACs, fine-tuned {DEMO_MASK_RCNN_EPOCHS} epochs",
    )


def run(arguments: argparse.Namespace) -> int:
    from segprune.demo import DEMO_SWEEP, run_demo, summary_table
    from segprune.report.instances import instance_markdown

    _console.progress_console.print(f"segprune demo: a U-Net on the built-in nuclei tiles, output in {arguments.out}")
    result = run_demo(
        arguments.out, epochs=arguments.epochs, on_epoch=_console.print_epoch, progress=_console.progress_console.print, mask_rcnn=arguments.mask_rcnn
    )
    scores = result.evaluation
    _console.output_console.print(
        f"dense U-Net: test Dice {scores.dice:.4f} {scores.dice_interval}  mean IoU {scores.iou:.4f} {scores.iou_interval}  "
        f"pixel accuracy {scores.pixel_accuracy:.4f} {scores.pixel_accuracy_interval} (95%, bootstrap over {scores.num_images} test images); "
        f"{result.params:,} parameters, {result.macs / 1e6:.1f}M MACs", markup=False,
    )
    _console.output_console.print(summary_table(result.rows), markup=False)
    print_balance(result.balance, DEMO_SWEEP.tolerance, result.rows)
    if result.instance_rows:
        _console.output_console.print(instance_markdown(result.instance_rows), markup=False)
    for note in result.instance_notes:
        _console.output_console.print(note, markup=False)
    if result.deployment is not None:
        from segprune.experiments.optimize.card import summary_line

        _console.output_console.print(summary_line(result.deployment), markup=False)
    deployed = "" if result.deployment is None else f"\ndeployed: {result.model_path.parent / 'deploy' / 'model_card.md'}"
    _console.output_console.print(f"model:   {result.model_path}\nmetrics: {result.metrics_path}\nreport:  {result.report_path}{deployed}", markup=False)
    return 0
