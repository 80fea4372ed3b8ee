"""`segprune sweep`: every method at every budget, fine-tuned and timed, with report.html and the balance point."""

from __future__ import annotations

import argparse
from pathlib import Path

from segprune import defaults
from segprune.cli import _console
from segprune.cli._choices import SWEEP_DEFAULT_METHODS, SWEEP_METHODS
from segprune.cli._common import (
    IMAGE_SIZE_METAVAR,
    add_data_options,
    add_distill_options,
    add_loading_options,
    distill_config,
    image_size_argument,
    layer_names,
    print_balance,
    read_data,
    read_model,
)

DESCRIPTION = "Prune with each method at each budget, fine-tune, measure, report."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the trained dense model (.keras or .h5)")
    add_data_options(parser)
    parser.add_argument("--out", required=True, help="output folder (an interrupted sweep there resumes)")
    parser.add_argument("--methods", default=",".join(SWEEP_DEFAULT_METHODS), help=f"comma-separated, from: {', '.join(SWEEP_METHODS)}")
    budgets = ",".join(f"{budget:g}" for budget in defaults.SWEEP_BUDGETS)
    parser.add_argument("--budgets", default=budgets, help=f"MACs fractions (default {budgets})")
    parser.add_argument(
        "--ignore", default="", help="comma-separated layer names whose channels every pruned model keeps (a vision transformer's patch_embedding: its token width)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=defaults.TOLERANCE, help=f"Dice points from dense for the balance point (default {defaults.TOLERANCE:g})"
    )
    parser.add_argument(
        "--finetune-epochs", type=int, default=defaults.SWEEP_FINETUNE_EPOCHS, help=f"fine-tuning after each pruning (default {defaults.SWEEP_FINETUNE_EPOCHS})"
    )
    add_distill_options(parser)
    parser.add_argument(
        "--runtimes", default="onnxruntime",
        help="comma-separated runtimes every network is exported to and timed on: onnxruntime, openvino, litert (default onnxruntime)",
    )
    parser.add_argument("--int8", action="store_true", help="also quantize every network to int8 per runtime and time it")
    parser.add_argument(
        "--image-size", type=image_size_argument, default=None, metavar=IMAGE_SIZE_METAVAR,
        help="N or HxW (height x width, e.g. 256x512): the fixed input size MACs are counted and models exported and timed at "
        "(default: the size the model was built for, else 256)",
    )
    parser.add_argument(
        "--executor", choices=("local", "ray"), default="local",
        help="run the cells one after another here (local, default) or each as a Ray task (ray; pip install 'segprune[ray]')",
    )
    parser.add_argument("--ray-address", default=None, help="with --executor ray: the cluster to use (e.g. auto); default: start a local one")
    parser.add_argument(
        "--instances", action="store_true",
        help="with DATA holding instances/: instance rows too (mask AP, AP50, DSB, union Dice): U-Net + watershed for every network, classical watershed",
    )
    parser.add_argument(
        "--mask-rcnn", default=None, metavar="FILE",
        help="a trained Mask R-CNN: instance rows for it, dense and pruned by each --mask-rcnn-methods criterion at every budget (implies --instances)",
    )
    parser.add_argument("--mask-rcnn-methods", default="l1", help="comma-separated one-shot criteria for the Mask R-CNN trunk: l1, l2, bn-scale, random (default l1)")
    parser.add_argument("--mask-rcnn-epochs", type=int, default=40, help="Mask R-CNN fine-tuning epochs after pruning (default 40)")
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    from segprune.experiments import InstanceSweepConfig, SweepConfig, instance_data, missing_mask_rcnn_note, run_instance_sweep, run_sweep
    from segprune.inference import measurement_size
    from segprune.models.mask_rcnn import load_mask_rcnn
    from segprune.report import build_report

    model = read_model(arguments, arguments.model)
    config = SweepConfig(
        methods=tuple(name for name in arguments.methods.split(",") if name),
        budgets=tuple(float(value) for value in arguments.budgets.split(",") if value),
        finetune_epochs=arguments.finetune_epochs,
        ignore=tuple(layer_names(arguments.ignore)),
        distill=distill_config(arguments),
        tolerance=arguments.tolerance,
        runtimes=tuple(name for name in arguments.runtimes.split(",") if name),
        int8=arguments.int8,
        image_size=measurement_size(model, arguments.image_size),
        executor=arguments.executor,
        ray_address=arguments.ray_address,
    )
    data = read_data(arguments)
    instances, detector, instance_config = None, None, None
    if arguments.instances or arguments.mask_rcnn:  # checked before the sweep runs, so a wrong file costs no time
        instances = instance_data(arguments.data, data.ids("test"))
        if instances is None:
            raise ValueError(f"--instances and --mask-rcnn need instance labels: {arguments.data!r} has no instances/ folder.")
        detector = load_mask_rcnn(arguments.mask_rcnn) if arguments.mask_rcnn else None
        instance_config = InstanceSweepConfig(
            criteria=tuple(name for name in arguments.mask_rcnn_methods.split(",") if name), budgets=config.budgets,
            finetune_epochs=arguments.mask_rcnn_epochs, image_size=config.image_size, threads=config.threads,
        )
    rows = run_sweep(model, data, arguments.out, config, progress=_console.progress_console.print)
    instance_rows, instance_notes = [], []
    if instances is not None:
        instance_rows = run_instance_sweep(instances, arguments.out, rows, detector, instance_config, _console.progress_console.print)
        if detector is None:
            instance_notes.append(missing_mask_rcnn_note(f"segprune sweep --model {arguments.model} --data {arguments.data} --out {arguments.out} "
                                                         "--mask-rcnn runs/mask_rcnn.keras", arguments.data))
    report, balance = build_report(
        rows, data, arguments.out, config.tolerance, f"segprune sweep: {Path(arguments.model).name} on {data.name}", instance_rows, instance_notes,
    )
    print_balance(balance, config.tolerance, rows)
    _console.output_console.print(f"report: {report}\nresults: {Path(arguments.out) / 'results.csv'}")
    return 0
