"""The `segprune` command: parses arguments, calls the Python API, prints. No logic of its own."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from segprune import _console
from segprune.classical import METHODS as CLASSICAL_METHODS
from segprune.classical.mapping import MAPPINGS
from segprune._io import refuse_overwrite
from segprune.data import BatchConfig, DataError, load_data
from segprune.graph.channels import UnsupportedLayerError
from segprune.models import ARCHITECTURES, ModelFileError, build_model, load_model
from segprune.report.sweep import SWEEP_METHODS, SweepConfig
from segprune.runtime.benchmark import RUNTIMES
from segprune.runtime.export import FORMATS, ExportMismatchError
from segprune.structured.importance import CRITERIA

REGULARISED_METHODS = ("l0-channel", "slimming")
SEARCH_METHODS = ("greedy", "random-search")
SPARSE_METHODS = ("magnitude", "l1", "l0")

DATA_HELP = "'synthetic' (the built-in dataset) or a folder with images/ and masks/ (or the Oxford-IIIT Pet layout)"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        return arguments.handler(arguments)
    except (DataError, ModelFileError, FileNotFoundError, ValueError, UnsupportedLayerError, ExportMismatchError) as error:
        _console.progress_console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segprune", description="Prune Keras 3 segmentation models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a segmentation model", description="Train a model and save the best epoch.")
    train.add_argument("--data", default="synthetic", help=DATA_HELP)
    train.add_argument("--model", default="unet", choices=sorted(ARCHITECTURES), help="architecture (default unet)")
    train.add_argument("--epochs", type=int, default=40, help="maximum epochs (default 40)")
    train.add_argument("--image-size", type=int, default=128, help="training patch size (default 128)")
    train.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    train.add_argument("--learning-rate", type=float, default=1e-3, help="peak Adam learning rate (default 1e-3)")
    train.add_argument("--patience", type=int, default=15, help="epochs without improvement before stopping (default 15)")
    train.add_argument("--base-filters", type=int, default=None, help="unet/fcn: filters of the first stage (default 16)")
    train.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and augmentation")
    train.add_argument("--out", required=True, help="where to save the model (.keras); rewritten at each better epoch")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run that wrote --out")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="score models on a split", description="Dice, IoU and pixel accuracy over a whole split.")
    evaluate.add_argument("models", nargs="+", metavar="MODEL", help=".keras or .h5 model files")
    evaluate.add_argument("--data", default="synthetic", help=DATA_HELP)
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--json", action="store_true", help="one JSON object per model per line")
    evaluate.set_defaults(handler=_evaluate)

    prune = commands.add_parser(
        "prune", help="remove channels: a genuinely smaller model", description="One-shot structured pruning, optionally fine-tuned."
    )
    prune.add_argument("model", metavar="MODEL", help=".keras or .h5 model to prune (never modified)")
    prune.add_argument(
        "--method",
        default="l1",
        choices=(*CRITERIA, *REGULARISED_METHODS, *SEARCH_METHODS),
        help="one-shot importance criterion (default l1); l0-channel / slimming (regularised training); "
        "greedy / random-search (search to --target, which may also be latency=F)",
    )
    amount = prune.add_mutually_exclusive_group(required=True)
    amount.add_argument("--ratio", type=float, help="share of channels to remove from every prunable group")
    amount.add_argument("--target", help="budget instead of a ratio: flops=F or params=F (fraction of the dense model)")
    prune.add_argument("--global-ranking", action="store_true", help="with --ratio: rank channels across all groups")
    prune.add_argument("--round-to", type=int, default=8, help="keep channel counts at multiples of this (default 8)")
    prune.add_argument("--ignore", default="", help="comma-separated layer names whose channels must stay")
    prune.add_argument("--data", default=None, help=DATA_HELP + "; needed by taylor, activation, mutual-info and fine-tuning")
    prune.add_argument("--compensate", action="store_true", help="move removed channels' mean contribution into consumer biases")
    prune.add_argument(
        "--finetune-epochs", type=int, default=None,
        help="fine-tune the pruned model for N epochs (default 0 for one-shot methods, 20 for the others)",
    )
    prune.add_argument("--image-size", type=int, default=256, help="image size at which MACs are reported (default 256)")
    prune.add_argument("--regularise-epochs", type=int, default=15, help="l0-channel / slimming: epochs under the penalty (default 15)")
    prune.add_argument("--strength", type=float, default=None, help="l0-channel / slimming: penalty weight (defaults 1.0 / 1e-4)")
    prune.add_argument("--candidates", type=int, default=20, help="random-search: configurations to evaluate (default 20)")
    prune.add_argument("--accuracy-floor", type=float, default=None, help="random-search: stop once a candidate's validation Dice reaches this")
    prune.add_argument("--iterations", type=int, default=10, help="greedy: steps from dense to the target (default 10)")
    prune.add_argument("--candidate-steps", type=int, default=20, help="search: short fine-tune steps per candidate (default 20; 0 scores inherited weights)")
    prune.add_argument("--threads", type=int, default=2, help="search: ONNX Runtime threads for latency targets and the final timing (default 2)")
    prune.add_argument("--seed", type=int, default=0, help="search: seed of sampling and fine-tuning")
    prune.add_argument("--workers", type=int, default=1, help="search: processes evaluating candidates (default 1)")
    prune.add_argument("--resume", action="store_true", help="search: continue the interrupted search kept beside --out")
    prune.add_argument("--out", required=True, help="where to save the pruned model (.keras)")
    prune.set_defaults(handler=_prune)

    sparsify = commands.add_parser(
        "sparsify", help="sparse (unstructured) pruning while fine-tuning",
        description="Magnitude pruning on a schedule, or L1 / L0 (hard-concrete) regularisation; saves a plain model with exact zeros.",
    )
    sparsify.add_argument("model", metavar="MODEL", help=".keras or .h5 model (never modified)")
    sparsify.add_argument("--data", required=True, help=DATA_HELP)
    sparsify.add_argument("--method", default="magnitude", choices=SPARSE_METHODS)
    sparsify.add_argument("--sparsity", type=float, required=True, help="share of kernel weights to zero, e.g. 0.9")
    sparsify.add_argument("--schedule", default="polynomial", choices=("polynomial", "constant"), help="magnitude: how sparsity rises")
    sparsify.add_argument("--ranking", default="global", choices=("layer", "global"), help="magnitude: one global threshold (default) or per layer")
    sparsify.add_argument("--pattern", default="unstructured", help="magnitude: unstructured, N:M such as 2:4, or block:RxC")
    sparsify.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs (default 30)")
    sparsify.add_argument("--recovery-epochs", type=int, default=10, help="l1 / l0: epochs after zeroing (default 10)")
    sparsify.add_argument("--strength", type=float, default=None, help="l1 / l0: penalty weight (defaults 1e-4 / 60)")
    sparsify.add_argument("--ignore", default="", help="comma-separated layer names whose kernels stay dense")
    sparsify.add_argument("--seed", type=int, default=0)
    sparsify.add_argument("--out", required=True, help="where to save the sparse model (.keras)")
    sparsify.set_defaults(handler=_sparsify)

    classical = commands.add_parser(
        "classical", help="score a classical baseline", description="Canny, Sobel, Otsu, watershed, K-means or DBSCAN, scored like the networks."
    )
    classical.add_argument("--method", required=True, choices=CLASSICAL_METHODS)
    classical.add_argument("--data", default="synthetic", help=DATA_HELP)
    classical.add_argument("--split", default="test", choices=("train", "val", "test"))
    classical.add_argument("--mapping", default="bright", choices=MAPPINGS, help="cluster-to-class rule for kmeans/dbscan; oracle peeks at the truth")
    classical.add_argument("--json", action="store_true", help="one JSON object")
    classical.set_defaults(handler=_classical)

    benchmark = commands.add_parser(
        "benchmark", help="time models side by side", description="Latency, throughput, CPU time, MACs and size, interleaved."
    )
    benchmark.add_argument("models", nargs="+", metavar="MODEL", help=".keras or .h5 model files")
    benchmark.add_argument("--runtime", default="onnxruntime", choices=RUNTIMES)
    benchmark.add_argument("--image-size", type=int, default=256)
    benchmark.add_argument("--batch", type=int, default=1)
    benchmark.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    benchmark.add_argument("--rounds", type=int, default=30, help="timed rounds after 5 warm-up rounds (default 30)")
    benchmark.add_argument("--json", action="store_true", help="one JSON object per model per line")
    benchmark.set_defaults(handler=_benchmark)

    export = commands.add_parser("export", help="export a model, verified", description="Export to ONNX or LiteRT and check it against Keras.")
    export.add_argument("model", metavar="MODEL", help=".keras or .h5 model file")
    export.add_argument("--format", default="onnx", choices=sorted(FORMATS))
    export.add_argument("--data", default=None, help=DATA_HELP + "; its test images are checked too")
    export.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed difference (default 1e-4)")
    export.add_argument("--out", required=True, help="the exported file")
    export.set_defaults(handler=_export)

    sweep = commands.add_parser(
        "sweep", help="every method at every budget, with a report", description="Prune with each method at each budget, fine-tune, measure, report."
    )
    sweep.add_argument("--model", required=True, help="the trained dense model (.keras or .h5)")
    sweep.add_argument("--data", default="synthetic", help=DATA_HELP)
    sweep.add_argument("--out", required=True, help="output folder (an interrupted sweep there resumes)")
    sweep.add_argument("--methods", default=",".join(SweepConfig().methods), help=f"comma-separated, from: {', '.join(SWEEP_METHODS)}")
    sweep.add_argument("--budgets", default="0.5,0.25,0.125", help="MACs fractions (default 0.5,0.25,0.125)")
    sweep.add_argument("--tolerance", type=float, default=1.0, help="Dice points from dense for the balance point (default 1.0)")
    sweep.add_argument("--finetune-epochs", type=int, default=10)
    sweep.set_defaults(handler=_sweep)

    demo = commands.add_parser(
        "demo", help="the main job on the built-in data", description="Train a U-Net on the synthetic data, sweep pruning methods, write the report."
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default 25)")
    demo.set_defaults(handler=_demo)
    return parser


def _train(arguments: argparse.Namespace) -> int:
    import keras

    from segprune.metrics import evaluate
    from segprune.training import TrainConfig, train

    out = Path(arguments.out)
    if out.suffix != ".keras":
        raise ValueError(f"--out must end in .keras, got {str(out)!r}.")
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
    result = train(
        model, data, arguments.epochs, config, checkpoint_path=out, on_epoch=_console.print_epoch, resume=arguments.resume
    )
    if result.interrupted:
        _console.progress_console.print("interrupted: run the same command with --resume to continue")
    ending = "interrupted" if result.interrupted else ("stopped early" if result.stopped_early else "done")
    _console.progress_console.print(
        f"{ending} after {len(result.history)} epochs in {result.seconds:.0f}s; best validation Dice "
        f"{result.best_val_dice:.4f} at epoch {result.best_epoch}; model saved to {out}"
    )
    if "test" in data.splits and data.splits["test"]:
        scores = evaluate(model, data, "test")
        _console.output_console.print(f"test Dice {scores.dice:.4f}  IoU {scores.iou:.4f}  pixel accuracy {scores.pixel_accuracy:.4f}")
    return 130 if result.interrupted else 0


def _prune(arguments: argparse.Namespace) -> int:
    from segprune._io import save_model
    from segprune.structured.oneshot import prune_channels
    from segprune.structured.selection import GlobalRanking
    from segprune.training import train

    out = Path(arguments.out)
    if out.suffix != ".keras":
        raise ValueError(f"--out must end in .keras, got {str(out)!r}.")
    refuse_overwrite(out, arguments.model)
    if arguments.method not in CRITERIA and (arguments.data is None or arguments.target is None):
        raise ValueError(
            f"--method {arguments.method} trains or scores the model on data: give --data and --target "
            "(e.g. flops=0.25, or latency=0.4 for the searches)."
        )
    if arguments.finetune_epochs is None:
        arguments.finetune_epochs = 0 if arguments.method in CRITERIA else 20
    if arguments.finetune_epochs and arguments.data is None:
        raise ValueError("--finetune-epochs needs --data to train on.")
    model = load_model(arguments.model)
    data = load_data(arguments.data) if arguments.data else None
    ignore = [name for name in arguments.ignore.split(",") if name]
    if arguments.method in REGULARISED_METHODS + SEARCH_METHODS:
        prune_by = _prune_regularised if arguments.method in REGULARISED_METHODS else _prune_search
        pruned = prune_by(arguments, model, data, ignore)
        _report_pruning(arguments, model, pruned, data)
        save_model(pruned, out)
        _console.output_console.print(f"pruned model: {out}")
        return 0
    ratio = GlobalRanking(arguments.ratio) if arguments.global_ranking and arguments.ratio is not None else arguments.ratio
    pruned = prune_channels(
        model,
        ratio=ratio if ratio is not None else 0.0,
        importance=arguments.method,
        round_to=arguments.round_to,
        ignore=ignore,
        data=data,
        target=arguments.target,
        compensate=arguments.compensate,
    )
    if arguments.finetune_epochs:
        _print_summary(arguments, model, pruned)
        _console.progress_console.print(f"fine-tuning for {arguments.finetune_epochs} epochs")
        train(pruned, data, arguments.finetune_epochs, checkpoint_path=out, on_epoch=_console.print_epoch)
        _report_pruning(arguments, model, pruned, data, summary=False)
    else:
        _report_pruning(arguments, model, pruned, data)
        save_model(pruned, out)
    _console.output_console.print(f"pruned model: {out}")
    return 0


def _prune_regularised(arguments: argparse.Namespace, model, data, ignore: list[str]):
    from segprune.structured.regularised import l0_channel_prune, slimming_prune

    method = l0_channel_prune if arguments.method == "l0-channel" else slimming_prune
    options = {} if arguments.strength is None else {"strength": arguments.strength}
    _console.progress_console.print(f"{arguments.method}: {arguments.regularise_epochs} epochs under the penalty, then surgery to {arguments.target}")
    result = method(
        model, data, arguments.target, epochs=arguments.regularise_epochs, finetune_epochs=arguments.finetune_epochs,
        round_to=arguments.round_to, ignore=ignore, on_epoch=_console.print_epoch, **options,
    )
    for note in result.notes:
        _console.progress_console.print(note)
    return result.model


def _prune_search(arguments: argparse.Namespace, model, data, ignore: list[str]):
    import keras

    from segprune.search.evaluation import CandidateSettings
    from segprune.search.greedy import greedy_search
    from segprune.search.random_search import random_search
    from segprune.search.settings import SearchSettings

    if ignore:
        raise ValueError("--ignore is not supported by the searches yet; use a one-shot method to keep layers whole.")
    keras.utils.set_random_seed(arguments.seed)
    folder = Path(arguments.out).with_suffix(".search")
    settings = SearchSettings(
        target=arguments.target, image_size=arguments.image_size, threads=arguments.threads, round_to=arguments.round_to,
        final_epochs=arguments.finetune_epochs, workers=arguments.workers,
    )
    candidates = CandidateSettings(finetune_steps=arguments.candidate_steps, importance="l1", seed=arguments.seed)
    common = dict(resume=arguments.resume, data_source=arguments.data, on_candidate=_print_candidate, on_epoch=_console.print_epoch)
    _console.progress_console.print(f"{arguments.method} search to {arguments.target}; log and state in {folder}")
    if arguments.method == "greedy":
        result = greedy_search(model, data, folder, settings, candidates, iterations=arguments.iterations, **common)
    else:
        result = random_search(model, data, folder, settings, candidates, arguments.candidates, arguments.accuracy_floor, **common)
    for note in result.notes:
        _console.progress_console.print(note)
    if result.latency_source:
        _console.output_console.print(f"latency during the search: {result.latency_source}")
    measured = result.measured
    _console.output_console.print(
        f"{result.candidates} candidates in {result.seconds:.0f}s; estimated {result.resource_fraction:.3f} of the dense "
        f"{arguments.target.split('=')[0]}; timed on ONNX Runtime ({arguments.threads} threads, 1x{arguments.image_size}x{arguments.image_size}): "
        f"{measured['dense_ms']:.2f} ms -> {measured['pruned_ms']:.2f} ms ({measured['speedup']:.2f}x)"
    )
    if arguments.target.startswith("latency"):
        wanted = float(arguments.target.split("=")[1])
        verdict = "meets" if measured["latency_fraction"] <= wanted else "MISSES"
        _console.output_console.print(f"timed latency fraction {measured['latency_fraction']:.3f} {verdict} the budget {wanted}")
    return result.model


def _print_candidate(record: dict, best: dict) -> None:
    where = f"step {record['iteration'] + 1} {record['key']}" if "iteration" in record else f"candidate {record['index'] + 1}"
    _console.progress_console.print(
        f"{where}: {record['share']:.3f} of dense, val Dice {record['score']:.4f} ({record['seconds']:.1f}s); best {best['score']:.4f}"
    )


def _print_summary(arguments: argparse.Namespace, model, pruned) -> None:
    from segprune.structured.summary import pruning_summary

    summary = pruning_summary(model, pruned, (arguments.image_size, arguments.image_size))
    rows = [
        [c.name, c.class_name, f"{c.channels_before} -> {c.channels_after}", f"{c.macs_before / 1e6:.1f} -> {c.macs_after / 1e6:.1f}", f"{c.params_before:,} -> {c.params_after:,}"]
        for c in summary.changed_layers()
        if c.macs_before
    ]
    _console.output_console.print(_console.table(f"pruned layers ({arguments.method})", ["layer", "class", "channels", "MMACs", "params"], rows))
    _console.output_console.print(
        f"MACs at {arguments.image_size}x{arguments.image_size}: {summary.macs_before / 1e6:.1f}M -> {summary.macs_after / 1e6:.1f}M "
        f"({summary.macs_ratio:.3f}); parameters: {summary.params_before:,} -> {summary.params_after:,} ({summary.params_ratio:.3f})"
    )


def _report_pruning(arguments: argparse.Namespace, model, pruned, data, summary: bool = True) -> None:
    from segprune.metrics import evaluate

    if summary:
        _print_summary(arguments, model, pruned)
    if data is not None and "test" in data.splits and data.splits["test"]:
        before, after = evaluate(model, data, "test"), evaluate(pruned, data, "test")
        _console.output_console.print(f"test Dice: dense {before.dice:.4f}, pruned {after.dice:.4f}")


def _sparsify(arguments: argparse.Namespace) -> int:
    import keras

    from segprune._io import save_model
    from segprune.metrics import evaluate
    from segprune.sparse import l0_sparsify, l1_sparsify, magnitude_prune, sparsity_summary
    from segprune.training import TrainConfig

    out = Path(arguments.out)
    if out.suffix != ".keras":
        raise ValueError(f"--out must end in .keras, got {str(out)!r}.")
    refuse_overwrite(out, arguments.model)
    keras.utils.set_random_seed(arguments.seed)
    model = load_model(arguments.model)
    data = load_data(arguments.data)
    ignore = [name for name in arguments.ignore.split(",") if name]
    config = TrainConfig(patience=None, batches=BatchConfig(seed=arguments.seed))
    options = {} if arguments.strength is None else {"strength": arguments.strength}
    _console.progress_console.print(f"{arguments.method}: {arguments.epochs} epochs to sparsity {arguments.sparsity}")
    if arguments.method == "magnitude":
        if arguments.strength is not None:
            raise ValueError("--strength applies to l1 and l0; magnitude pruning has no penalty.")
        result = magnitude_prune(
            model, data, arguments.sparsity, arguments.epochs, arguments.schedule, arguments.ranking, arguments.pattern,
            config, ignore, _console.print_epoch,
        )
    else:
        method = l1_sparsify if arguments.method == "l1" else l0_sparsify
        result = method(
            model, data, arguments.sparsity, arguments.epochs, recovery_epochs=arguments.recovery_epochs, config=config,
            ignore=ignore, on_epoch=_console.print_epoch, **options,
        )
    for note in result.notes:
        _console.progress_console.print(note)
    save_model(result.model, out)
    summary = sparsity_summary(result.model, ignore=ignore)
    rows = [[row.layer, row.weight, f"{row.size:,}", f"{row.sparsity:.3f}"] for row in summary.layers]
    _console.output_console.print(_console.table(f"kernel sparsity ({arguments.method})", ["layer", "weight", "size", "sparsity"], rows))
    _console.output_console.print(
        f"sparsity {summary.sparsity:.4f}; zipped {summary.zipped_bytes / 1e6:.2f} MB; MACs at 256x256 "
        f"{summary.total_macs / 1e9:.2f}G, {summary.macs_if_zeros_skipped / 1e9:.2f}G if zeros were skipped"
    )
    if "test" in data.splits and data.splits["test"]:
        before, after = evaluate(model, data, "test"), evaluate(result.model, data, "test")
        _console.output_console.print(f"test Dice: dense {before.dice:.4f}, sparse {after.dice:.4f}")
    _console.output_console.print(f"sparse model: {out}")
    return 0


def _sweep(arguments: argparse.Namespace) -> int:
    from segprune.report import build_report, run_sweep

    config = SweepConfig(
        methods=tuple(name for name in arguments.methods.split(",") if name),
        budgets=tuple(float(value) for value in arguments.budgets.split(",") if value),
        finetune_epochs=arguments.finetune_epochs,
        tolerance=arguments.tolerance,
    )
    data = load_data(arguments.data)
    rows = run_sweep(load_model(arguments.model), data, arguments.out, config, progress=_console.progress_console.print)
    report, balance = build_report(rows, data, arguments.out, config.tolerance, f"segprune sweep: {Path(arguments.model).name} on {data.name}")
    _print_balance(balance, config.tolerance)
    _console.output_console.print(f"report: {report}\nresults: {Path(arguments.out) / 'results.csv'}")
    return 0


def _print_balance(balance: dict | None, tolerance: float) -> None:
    if balance is None or balance["method"] == "dense":
        _console.output_console.print(f"balance point: no pruned network stays within {tolerance:g} Dice points of dense")
        return
    _console.output_console.print(
        f"balance point: {balance['method']} at MACs budget {balance['budget']}: Dice {balance['dice']:.4f}, "
        f"{balance['latency_ms']:.2f} ms, {balance['speedup']:.2f}x faster than dense (tolerance {tolerance:g} Dice points)"
    )


def _benchmark(arguments: argparse.Namespace) -> int:
    from segprune.runtime.benchmark import benchmark_models, limit_keras_threads

    if arguments.runtime == "keras":
        limit_keras_threads(arguments.threads)
    results = benchmark_models(arguments.models, arguments.runtime, arguments.image_size, arguments.batch, arguments.threads, arguments.rounds)
    if arguments.json:
        for result in results:
            print(json.dumps(result.to_dict()), flush=True)
        return 0
    reference = results[0].latency_ms
    rows = [
        [Path(r.model).name, f"{r.latency_ms:.2f}", f"{r.p90_ms:.2f}", f"{reference / r.latency_ms:.2f}x", f"{r.images_per_second:.1f}",
         f"{r.cpu_ms_per_image:.1f}", f"{r.macs / 1e6:.0f}M", f"{r.params:,}", f"{r.zipped_bytes / 1024:.0f} KiB"]
        for r in results
    ]
    title = f"{arguments.runtime}, {arguments.batch}x{arguments.image_size}x{arguments.image_size}, {arguments.threads} threads, interleaved"
    columns = ["model", "median ms", "p90 ms", "speed-up", "images/s", "CPU ms/image", "MACs", "params", "zipped"]
    _console.output_console.print(_console.table(title, columns, rows))
    return 0


def _export(arguments: argparse.Namespace) -> int:
    from segprune.inference import input_channels
    from segprune.runtime.export import export_model

    refuse_overwrite(arguments.out, arguments.model)
    model = load_model(arguments.model)
    samples = []
    if arguments.data:
        from segprune.data import adapt_channels
        from segprune.inference import pad_to_multiple

        data = load_data(arguments.data)
        samples = [pad_to_multiple(adapt_channels(image, input_channels(model)), 32) for _, image, _ in data.samples("test")][:4]
    difference = export_model(model, arguments.out, arguments.format, arguments.tolerance, samples)
    _console.output_console.print(
        f"{arguments.format} model written to {arguments.out}; largest difference from Keras {difference:.3g} "
        f"over {1 + len(samples)} input(s) (tolerance {arguments.tolerance:g})"
    )
    return 0


def _classical(arguments: argparse.Namespace) -> int:
    from segprune.classical import evaluate_classical

    result = evaluate_classical(arguments.method, load_data(arguments.data), arguments.split, mapping=arguments.mapping)
    row = result.to_dict()
    if arguments.json:
        print(json.dumps({key: _json_number(value) for key, value in row.items()}))
        return 0
    columns = ["method", "mapping", "dice", "iou", "pixel_accuracy", "ms_per_image"]
    _console.output_console.print(_console.table(f"classical baseline, split {arguments.split}", columns, [[row[c] for c in columns]]))
    if result.collapsed_to_binary:
        _console.output_console.print("note: the dataset has more than two classes; scored as foreground vs background")
    return 0


def _evaluate(arguments: argparse.Namespace) -> int:
    from segprune.metrics import evaluate

    data = load_data(arguments.data)
    rows = []
    for path in arguments.models:
        model = load_model(path)
        scores = evaluate(model, data, arguments.split)
        row = {
            "model": path,
            "split": arguments.split,
            "dice": scores.dice,
            "iou": scores.iou,
            "pixel_accuracy": scores.pixel_accuracy,
            "params": model.count_params(),
            "iou_per_class": list(scores.iou_per_class),
            "num_images": scores.num_images,
        }
        if arguments.json:
            print(json.dumps({key: _json_number(value) for key, value in row.items()}), flush=True)
        rows.append(row)
    if not arguments.json:
        columns = ["model", "dice", "iou", "pixel_accuracy", "params"]
        _console.output_console.print(
            _console.table(f"{data.name}, split {arguments.split}", columns, [[row[c] for c in columns] for row in rows])
        )
    return 0


def _json_number(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_json_number(item) for item in value]
    return value


def _demo(arguments: argparse.Namespace) -> int:
    from segprune.demo import DEMO_EPOCHS, DEMO_SWEEP, run_demo

    _console.progress_console.print(f"segprune demo: training a U-Net on the built-in synthetic data, output in {arguments.out}")
    result = run_demo(
        arguments.out, epochs=arguments.epochs or DEMO_EPOCHS, on_epoch=_console.print_epoch, progress=_console.progress_console.print
    )
    scores = result.evaluation
    _console.output_console.print(
        f"dense U-Net: test Dice {scores.dice:.4f}  mean IoU {scores.iou:.4f}  pixel accuracy {scores.pixel_accuracy:.4f}; "
        f"{result.params:,} parameters, {result.macs / 1e6:.1f}M MACs at 128x128"
    )
    _print_balance(result.balance, DEMO_SWEEP.tolerance)
    _console.output_console.print(f"model:   {result.model_path}\nmetrics: {result.metrics_path}\nreport:  {result.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
