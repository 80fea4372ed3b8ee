"""`segprune optimize`: from a trained model to a deployable, timed file with a model card, in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from segprune import defaults
from segprune.cli import _console
from segprune.cli._choices import OPTIMIZE_METHODS, OPTIMIZE_RUNTIMES, QUANTIZE_PRECISIONS
from segprune.cli._common import (
    IMAGE_SIZE_METAVAR,
    add_data_options,
    add_distill_options,
    add_loading_options,
    distill_config,
    image_size_argument,
    read_data,
    read_model,
)

DESCRIPTION = (
    "Prune (a ladder of budgets chosen from --target and the dense model's measured latency), fine-tune with distillation, "
    "quantize where the runtime and CPU allow, time every candidate beside dense on --runtime and dense ONNX Runtime fp32, "
    "and keep the fastest whose paired loss interval stays within --tolerance Dice points: writes the deployable file, "
    "model.keras and model_card.md/.json to --out."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the trained dense model (.keras or .h5; never modified)")
    add_data_options(parser, help_suffix="; candidates fine-tune on its train split and are scored on its test split")
    parser.add_argument("--runtime", required=True, metavar="RUNTIME", help=f"where the model ships: {', '.join(OPTIMIZE_RUNTIMES)}")
    parser.add_argument(
        "--target", default="speedup=8",
        help="speedup=S (S times faster than dense on ONNX Runtime fp32; default speedup=8) or latency=MS (milliseconds on --runtime)",
    )
    parser.add_argument(
        "--tolerance", type=float, default=defaults.TOLERANCE,
        help=f"Dice points the deployed model may lose against dense, judged by the upper end of the paired 95%% interval (default {defaults.TOLERANCE:g})",
    )
    parser.add_argument("--method", default="l1", choices=OPTIMIZE_METHODS, help="l1 (one-shot, the default) or a search on the runtime's latency table")
    parser.add_argument("--budgets", default=None, help="the ladder: comma-separated fractions of the dense MACs (default 0.5,0.25,0.125,0.0625,0.03125)")
    parser.add_argument(
        "--precision", default=None,
        help=f"comma-separated precisions to deploy, from fp32,{','.join(QUANTIZE_PRECISIONS)} (default: every one --runtime runs on this CPU)",
    )
    parser.add_argument(
        "--finetune-epochs", type=int, default=defaults.OPTIMIZE_FINETUNE_EPOCHS, help=f"fine-tuning of every candidate (default {defaults.OPTIMIZE_FINETUNE_EPOCHS})"
    )
    add_distill_options(parser)
    parser.add_argument("--learning-rate", type=float, default=defaults.LEARNING_RATE, help=f"peak fine-tune learning rate (default {defaults.LEARNING_RATE:g})")
    parser.add_argument(
        "--image-size", type=image_size_argument, default=None, metavar=IMAGE_SIZE_METAVAR,
        help="the fixed input size files are exported and timed at, N or HxW (default: the model's, else 256)",
    )
    parser.add_argument("--threads", type=int, default=defaults.THREADS, help=f"runtime threads for scoring and timing (default {defaults.THREADS})")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per timing run, after 5 warm-up rounds (default 30)")
    parser.add_argument("--max-minutes", type=float, default=None, help="start no new candidate after M minutes; choose among the finished steps and say so")
    parser.add_argument("--seed", type=int, default=defaults.SEED, help=f"seed of pruning and fine-tuning (default {defaults.SEED})")
    parser.add_argument("--resume", action="store_true", help="continue the optimize run that wrote --out (after a kill, or with more --max-minutes)")
    parser.add_argument("--out", required=True, help="a new folder for the deployable file, model.keras, model_card.md/.json and the run's log")
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    from segprune.experiments.optimize import OptimizeSettings, check_out_dir, optimize
    from segprune.training import TrainConfig
    from segprune.training.run_state import RunInterrupted

    settings = OptimizeSettings(  # checked here, before the model and data load
        runtime=arguments.runtime, target=arguments.target, tolerance=arguments.tolerance, method=arguments.method,
        **({} if arguments.budgets is None else {"budgets": _numbers(arguments.budgets, "--budgets")}),
        precisions=None if arguments.precision is None else tuple(name for name in arguments.precision.split(",") if name),
        finetune_epochs=arguments.finetune_epochs, distill=distill_config(arguments),
        train=TrainConfig(learning_rate=arguments.learning_rate, patience=None), image_size=arguments.image_size, threads=arguments.threads,
        rounds=arguments.rounds, max_minutes=arguments.max_minutes, seed=arguments.seed,
    )
    out = Path(arguments.out)
    check_out_dir(out, arguments.resume)
    model = read_model(arguments, arguments.model)
    data = read_data(arguments)
    try:
        result = optimize(model, data, out, settings, resume=arguments.resume, say=_say, sources={"model": arguments.model, "data": arguments.data})
    except RunInterrupted:  # Ctrl-C at the end of a fine-tune epoch: the run's state and log are kept
        _console.progress_console.print(f"interrupted; run the same command with --resume to continue from {str(out)!r}", markup=False)
        return 130
    _console.output_console.print(f"model card: {out / 'model_card.md'}\ndeployed: {result.deployed}", markup=False)
    return 0


def _say(line: str) -> None:
    _console.progress_console.print(line, markup=False, highlight=False, soft_wrap=True)


def _numbers(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(value) for value in text.split(",") if value)
    except ValueError:
        raise ValueError(f"{option} takes comma-separated fractions such as 0.5,0.25,0.125; got {text!r}.") from None
