"""`segprune sweep`: every method at every budget, fine-tuned and timed, with report.html and the balance point."""

from __future__ import annotations

import argparse
from pathlib import Path

from segprune.cli import _console
from segprune.cli._common import (  # noqa: F401  (USER_ERRORS is read by segprune.cli.main)
    DATA_HELP,
    USER_ERRORS,
    add_distill_options,
    add_loading_options,
    distill_config,
    print_balance,
    read_model,
)
from segprune.data import load_data
from segprune.experiments import SWEEP_METHODS, SweepConfig, run_sweep
from segprune.report import build_report

DESCRIPTION = "Prune with each method at each budget, fine-tune, measure, report."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the trained dense model (.keras or .h5)")
    parser.add_argument("--data", default="nuclei", help=DATA_HELP)
    parser.add_argument("--out", required=True, help="output folder (an interrupted sweep there resumes)")
    parser.add_argument("--methods", default=",".join(SweepConfig().methods), help=f"comma-separated, from: {', '.join(SWEEP_METHODS)}")
    parser.add_argument("--budgets", default="0.5,0.25,0.125", help="MACs fractions (default 0.5,0.25,0.125)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="Dice points from dense for the balance point (default 1.0)")
    parser.add_argument("--finetune-epochs", type=int, default=10, help="fine-tuning after each pruning (default 10)")
    add_distill_options(parser)
    parser.add_argument(
        "--runtimes", default="onnxruntime",
        help="comma-separated runtimes every network is exported to and timed on: onnxruntime, openvino, litert (default onnxruntime)",
    )
    parser.add_argument("--int8", action="store_true", help="also quantize every network to int8 per runtime and time it")
    parser.add_argument("--image-size", type=int, default=256, help="the fixed input size models are exported and timed at (default 256)")
    parser.add_argument(
        "--executor", choices=("local", "ray"), default="local",
        help="run the cells one after another here (local, default) or each as a Ray task (ray; pip install 'segprune[ray]')",
    )
    parser.add_argument("--ray-address", default=None, help="with --executor ray: the cluster to use (e.g. auto); default: start a local one")
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    config = SweepConfig(
        methods=tuple(name for name in arguments.methods.split(",") if name),
        budgets=tuple(float(value) for value in arguments.budgets.split(",") if value),
        finetune_epochs=arguments.finetune_epochs,
        distill=distill_config(arguments),
        tolerance=arguments.tolerance,
        runtimes=tuple(name for name in arguments.runtimes.split(",") if name),
        int8=arguments.int8,
        image_size=arguments.image_size,
        executor=arguments.executor,
        ray_address=arguments.ray_address,
    )
    data = load_data(arguments.data)
    rows = run_sweep(read_model(arguments, arguments.model), data, arguments.out, config, progress=_console.progress_console.print)
    report, balance = build_report(rows, data, arguments.out, config.tolerance, f"segprune sweep: {Path(arguments.model).name} on {data.name}")
    print_balance(balance, config.tolerance)
    _console.output_console.print(f"report: {report}\nresults: {Path(arguments.out) / 'results.csv'}")
    return 0
