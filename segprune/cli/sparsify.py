"""`segprune sparsify`: sparse (unstructured) pruning while fine-tuning; a plain model with exact zeros."""

from __future__ import annotations

import argparse

from segprune import defaults
from segprune.cli import _console
from segprune.cli._choices import SPARSE_METHODS
from segprune.cli._common import (
    IMAGE_SIZE_METAVAR,
    add_data_options,
    add_loading_options,
    image_size_argument,
    layer_names,
    print_test_scores,
    read_data,
    read_model,
)

DESCRIPTION = "Magnitude pruning on a schedule, or L1 / L0 (hard-concrete) regularisation; saves a plain model with exact zeros."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".keras or .h5 model (never modified)")
    add_data_options(parser, required=True)
    parser.add_argument("--method", default="magnitude", choices=SPARSE_METHODS)
    parser.add_argument("--sparsity", type=float, required=True, help="share of kernel weights to zero, e.g. 0.9")
    parser.add_argument("--schedule", default=None, choices=("polynomial", "constant"), help="magnitude: how sparsity rises (default polynomial)")
    parser.add_argument("--ranking", default=None, choices=("layer", "global"), help="magnitude: one global threshold (default) or per layer")
    parser.add_argument("--pattern", default=None, help="magnitude: unstructured (default), N:M such as 2:4, or block:RxC")
    parser.add_argument("--epochs", type=int, default=defaults.SPARSIFY_EPOCHS, help=f"fine-tuning epochs (default {defaults.SPARSIFY_EPOCHS})")
    parser.add_argument("--recovery-epochs", type=int, default=None, help="l1 / l0: epochs after zeroing (default 5)")
    parser.add_argument("--strength", type=float, default=None, help="l1 / l0: penalty weight (defaults 1e-4 / 60)")
    parser.add_argument("--ignore", default="", help="comma-separated layer names whose kernels stay dense")
    parser.add_argument(
        "--image-size", type=image_size_argument, default=None, metavar=IMAGE_SIZE_METAVAR,
        help="N or HxW (height x width, e.g. 256x512) at which MACs are reported (default: the size the model was built for, else 256)"
    )
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    parser.add_argument(
        "--learning-rate", type=float, default=defaults.LEARNING_RATE,
        help=f"peak Adam learning rate of the fine-tune (default {defaults.LEARNING_RATE:g}); after a diverging loss, --resume with a lower one",
    )
    parser.add_argument("--out", required=True, help="where to save the sparse model (.keras)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run that wrote --out (its state is in OUT.resume/)")
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    from segprune._io import check_output
    from segprune.api import SPARSE_SETTINGS, sparsify
    from segprune.data import BatchConfig
    from segprune.inference import measurement_size
    from segprune.metrics import evaluate
    from segprune.sparse import sparsity_summary
    from segprune.training import TrainConfig
    from segprune.training.run_state import RunInterrupted, run_folder

    out = check_output(arguments.out, arguments.model)
    config = TrainConfig(learning_rate=arguments.learning_rate, patience=None, batches=BatchConfig(seed=arguments.seed))
    settings = {}
    for option in ("schedule", "ranking", "pattern", "recovery_epochs", "strength"):
        value = getattr(arguments, option)
        if value is None:
            continue
        if option not in SPARSE_SETTINGS[arguments.method]:
            raise ValueError(f"--{option.replace('_', '-')} does not apply to --method {arguments.method}; it takes {list(SPARSE_SETTINGS[arguments.method])}.")
        settings[option] = value
    model = read_model(arguments, arguments.model)
    size = measurement_size(model, arguments.image_size)  # checked before training, reported after
    data = read_data(arguments)
    ignore = layer_names(arguments.ignore)
    _console.progress_console.print(
        f"{arguments.method}: {arguments.epochs} epochs to sparsity {arguments.sparsity}; state in {run_folder(out)} until it finishes"
    )
    try:
        result = sparsify(
            model, arguments.method, sparsity=arguments.sparsity, data=data, epochs=arguments.epochs, ignore=ignore, seed=arguments.seed,
            train_config=config, checkpoint_path=out, resume=arguments.resume, on_epoch=_console.print_epoch, **settings,
        )
    except RunInterrupted as interruption:
        _console.progress_console.print(str(interruption))
        return 130
    for note in result.notes:
        _console.progress_console.print(note)
    summary = sparsity_summary(result.model, size, ignore=ignore)
    rows = [[row.layer, row.weight, f"{row.size:,}", f"{row.sparsity:.3f}"] for row in summary.layers]
    _console.output_console.print(_console.table(f"kernel sparsity ({arguments.method})", ["layer", "weight", "size", "sparsity"], rows))
    _console.output_console.print(
        f"sparsity {summary.sparsity:.4f}; zipped {summary.zipped_bytes / 1e6:.2f} MB; MACs at {size[0]}x{size[1]} "
        f"{summary.total_macs / 1e9:.2f}G, {summary.macs_if_zeros_skipped / 1e9:.2f}G if zeros were skipped"
    )
    if data.splits.get("test"):
        before, after = evaluate(model, data, "test"), evaluate(result.model, data, "test")
        print_test_scores(before, after, "sparse")
    _console.output_console.print(f"sparse model: {out}")
    return 0
