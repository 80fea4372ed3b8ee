"""`segprune prune`: remove channels by any structured method (one-shot, regularised, search)."""

from __future__ import annotations

import argparse
import functools
from typing import TYPE_CHECKING

from segprune import defaults
from segprune.cli import _console
from segprune.cli._choices import LATENCY_RUNTIMES, ONESHOT_METHODS, PRECISIONS, REGULARISED_METHODS, SEARCH_METHODS
from segprune.cli._common import (
    IMAGE_SIZE_METAVAR,
    add_data_options,
    add_distill_options,
    add_loading_options,
    data_source,
    distill_config,
    image_size_argument,
    layer_names,
    print_pruning_summary,
    print_test_scores,
    read_data,
    read_model,
    refuse_mask_options,
)
from segprune.progress_lines import candidate_line, plan_line
from segprune.sizes import format_size

if TYPE_CHECKING:  # annotations only
    from segprune.api import PruneResult
    from segprune.structured.heads import HeadsSummary

DESCRIPTION = (
    "Structured pruning: one-shot by an importance criterion, regularised (l0-channel, slimming) or searched "
    "(greedy, random-search); the result is a genuinely smaller plain Keras model, optionally fine-tuned."
)

# Options that map one-to-one onto a method setting of segprune.prune (attribute -> setting).
_SETTING_OPTIONS = {
    "global_ranking": "global_ranking",
    "compensate": "compensate",
    "regularise_epochs": "regularise_epochs",
    "strength": "strength",
    "iterations": "iterations",
    "candidates": "candidates",
    "accuracy_floor": "accuracy_floor",
    "candidate_steps": "candidate_steps",
    "threads": "threads",
    "runtime": "runtime",
    "precision": "precision",
    "workers": "workers",
    "max_minutes": "max_minutes",
    "executor": "executor",
    "ray_address": "ray_address",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".keras or .h5 model to prune (never modified)")
    parser.add_argument(
        "--method", default="l1", choices=(*ONESHOT_METHODS, *REGULARISED_METHODS, *SEARCH_METHODS),
        help="one-shot importance criterion (default l1); l0-channel / slimming (regularised training); "
        "greedy / random-search (search to --target, which may also be latency=F)",
    )
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--ratio", type=float, help="one-shot: share of channels to remove from every prunable group")
    amount.add_argument("--target", help="budget instead of a ratio: flops=F or params=F (fraction of the dense model); searches also latency=F")
    parser.add_argument(
        "--prune-heads", type=float, default=None, metavar="R",
        help="a Mask R-CNN only: also remove this share of channels (0 <= R < 1) from its RoI heads (box head's dense layers, mask "
        "head's convolutions), which run per proposal and per detection and cost more end to end than the trunk; ranked by --method's "
        "criterion (l1 for a search), before the trunk is pruned; --target flops=F or params=F still prices the trunk alone, "
        "latency=F is a share of the whole exported "
        "detector's latency with its heads pruned",
    )
    parser.add_argument(
        "--prune-pyramid", type=float, default=None, metavar="P",
        help="a Mask R-CNN only: remove this share (0 <= P < 1) of the FPN pyramid's channels the heads pool (each level's "
        "convolution, the RPN convolution's input, the heads' first layers): the largest end-to-end gain and the largest AP cost "
        "(nuclei, halved: 8-11 points of AP50); --target flops=F or params=F stays a share of the dense trunk",
    )
    parser.add_argument("--global-ranking", action="store_true", default=None, help="with --ratio: rank channels across all groups")
    parser.add_argument("--round-to", type=int, default=defaults.ROUND_TO, help=f"keep channel counts at multiples of this (default {defaults.ROUND_TO})")
    parser.add_argument("--ignore", default="", help="comma-separated layer names whose channels must stay")
    add_data_options(parser, default=None, help_suffix="; needed by taylor, activation, mutual-info and fine-tuning")
    parser.add_argument("--compensate", action="store_true", default=None, help="move removed channels' mean contribution into consumer biases")
    parser.add_argument(
        "--finetune-epochs", type=int, default=None,
        help=f"fine-tune the pruned model for N epochs (default {defaults.ONESHOT_FINETUNE_EPOCHS} for one-shot methods, {defaults.FINETUNE_EPOCHS} for the others)",
    )
    add_distill_options(parser)
    parser.add_argument(
        "--image-size", type=image_size_argument, default=None, metavar=IMAGE_SIZE_METAVAR,
        help="N or HxW (height x width, e.g. 256x512) at which MACs budgets and latency are measured (default: the size the model "
        "was built for, else 256)",
    )
    parser.add_argument("--regularise-epochs", type=int, default=None, help=f"l0-channel / slimming: epochs under the penalty (default {defaults.REGULARISE_EPOCHS})")
    parser.add_argument("--strength", type=float, default=None, help="l0-channel / slimming: penalty weight (defaults 1.0 / 1e-4)")
    parser.add_argument("--candidates", type=int, default=None, help=f"random-search: configurations to evaluate (default {defaults.SEARCH_CANDIDATES})")
    parser.add_argument("--accuracy-floor", type=float, default=None, help="random-search: stop once a candidate's validation score (Dice; mask AP for a Mask R-CNN) reaches this")
    parser.add_argument("--iterations", type=int, default=None, help=f"greedy: steps from dense to the target (default {defaults.GREEDY_ITERATIONS})")
    parser.add_argument("--candidate-steps", type=int, default=None, help=f"search: short fine-tune steps per candidate (default {defaults.CANDIDATE_STEPS}; 0 scores inherited weights)")
    parser.add_argument("--threads", type=int, default=None, help=f"search: runtime threads for latency targets and the final timing (default {defaults.THREADS})")
    parser.add_argument(
        "--runtime", default=None, choices=LATENCY_RUNTIMES,
        help="search: the runtime the model will ship on, which latency targets are tabled and timed on (default onnxruntime)",
    )
    parser.add_argument("--precision", default=None, choices=PRECISIONS, help="search: fp32 (default), bf16 (openvino) or int8, as the model will ship")
    parser.add_argument("--seed", type=int, default=defaults.SEED, help=f"seed of random criteria, searches and fine-tuning (default {defaults.SEED})")
    parser.add_argument(
        "--learning-rate", type=float, default=defaults.LEARNING_RATE,
        help=f"peak Adam learning rate of the fine-tune and regularised training (default {defaults.LEARNING_RATE:g}); after a diverging loss, --resume with a lower one",
    )
    parser.add_argument("--workers", type=int, default=None, help="search: processes evaluating candidates (default 1)")
    parser.add_argument(
        "--max-minutes", type=float, default=None,
        help="search: stop after M minutes at the best result so far (greedy: the last finished step, cut to the budget); --resume continues",
    )
    parser.add_argument(
        "--executor", choices=("local", "ray"), default=None,
        help="search: evaluate candidates here / in --workers processes (local, default) or as Ray tasks (ray; pip install 'segprune[ray]')",
    )
    parser.add_argument("--ray-address", default=None, help="with --executor ray: the cluster to use (e.g. auto); default: start a local one")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the interrupted run that wrote --out (state in OUT.resume/, searches in OUT.search/); refused if it was another run",
    )
    parser.add_argument("--out", required=True, help="where to save the pruned model (.keras)")
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    from segprune._io import check_output
    from segprune.api import prune
    from segprune.cost import parse_target
    from segprune.data.instances import load_instance_data
    from segprune.inference import measurement_size
    from segprune.instance_metrics import evaluate_instances
    from segprune.metrics import evaluate
    from segprune.models.mask_rcnn import is_mask_rcnn_file, load_mask_rcnn
    from segprune.search.kinds import SEGMENTATION, model_kind
    from segprune.training import TrainConfig
    from segprune.training.run_state import RunInterrupted

    out = check_output(arguments.out, arguments.model)
    train_config = TrainConfig(learning_rate=arguments.learning_rate, patience=None)  # as segprune.prune trains by default
    if arguments.target:
        parse_target(arguments.target)  # a malformed target is refused before the model and data load
    settings = _method_settings(arguments)
    if arguments.method in SEARCH_METHODS and arguments.data:
        settings["data_source"] = data_source(arguments)  # worker processes load the data themselves
    detector = is_mask_rcnn_file(arguments.model)  # a Mask R-CNN: its trunk is pruned, fine-tuned on DATA's instances
    for option, value in (("--prune-heads", arguments.prune_heads), ("--prune-pyramid", arguments.prune_pyramid)):
        if value is not None and not detector:
            raise ValueError(
                f"{option} prunes a Mask R-CNN's RoI heads or the pyramid they pool; {arguments.model} is not a Mask R-CNN (saved by "
                "segprune train --model mask-rcnn). Leave it out: --ratio or --target prune the whole model."
            )
    if detector and arguments.learning_rate != defaults.LEARNING_RATE:
        raise ValueError(f"--learning-rate {arguments.learning_rate:g} was given for a Mask R-CNN, whose fine-tune has a rate of its own; leave it out.")
    model = load_mask_rcnn(arguments.model) if detector else read_model(arguments, arguments.model)
    data = None
    if arguments.data:
        if detector:
            refuse_mask_options(arguments, "a Mask R-CNN")
        data = load_instance_data(arguments.data, val_fraction=0.15, seed=arguments.seed) if detector else read_data(arguments)
    kind = model_kind(model)  # a Mask R-CNN's trunk or a SAM's image encoder is the network pruned and measured
    arguments.image_size = measurement_size(kind.network(model), arguments.image_size)
    trains_masks = kind is SEGMENTATION  # a detector fine-tunes on its ground truth only; a SAM is not fine-tuned
    is_search = arguments.method in SEARCH_METHODS
    folder = out.with_suffix(".search") if is_search else None
    _console.progress_console.print(_plan(arguments, folder, detector))
    try:
        result = prune(
            model, arguments.method, target=arguments.target, ratio=arguments.ratio, data=data, finetune_epochs=arguments.finetune_epochs,
            heads=arguments.prune_heads, pyramid=arguments.prune_pyramid, round_to=arguments.round_to, ignore=layer_names(arguments.ignore), image_size=arguments.image_size,
            seed=arguments.seed,
            distill=distill_config(arguments) if trains_masks else None, train_config=train_config if trains_masks else None,
            checkpoint_path=out, folder=folder, resume=arguments.resume,
            on_epoch=_console.print_detector_epoch if detector else _console.print_epoch, on_candidate=functools.partial(_print_candidate, metric="val mask AP" if detector else "val Dice"), on_search_start=_print_plan, **settings,
        )
    except RunInterrupted as interruption:
        _console.progress_console.print(str(interruption))
        return 130
    for note in result.notes:
        _console.progress_console.print(note)
    print_pruning_summary(result.summary, arguments.method)
    if result.heads is not None:
        _print_heads(result.heads)
    if result.search is not None:
        _print_search(result, arguments)
    if detector and data is not None and data.splits.get("test"):
        before, after = evaluate_instances(model, data, "test"), evaluate_instances(result.model, data, "test")
        _console.output_console.print(
            f"test mask AP50: dense {before['ap50']:.4f}, pruned {after['ap50']:.4f}; mask AP: dense {before['ap']:.4f}, pruned {after['ap']:.4f}"
        )
    elif data is not None and data.splits.get("test"):
        before, after = evaluate(model, data, "test"), evaluate(result.model, data, "test")
        print_test_scores(before, after, "pruned")
    _console.output_console.print(f"pruned model: {out}")
    return 0


def _print_heads(heads: HeadsSummary) -> None:
    """The RoI heads' pruned layers, priced per region (the box head runs on every proposal, the mask head on every detection)."""
    rows = [
        [change.name, change.class_name, f"{change.channels_before} -> {change.channels_after}",
         f"{change.macs_before / 1e6:.3f} -> {change.macs_after / 1e6:.3f}", f"{change.params_before:,} -> {change.params_after:,}"]
        for head in (heads.box, heads.mask)
        for change in head.changed_layers()
        if change.macs_before
    ]
    ratios = [f"{name} {value:g}" for name, value in (("heads", heads.ratio), ("pyramid", heads.pyramid_ratio)) if value is not None]
    title = f"pruned RoI heads ({heads.importance}, {', '.join(ratios)})"
    _console.output_console.print(_console.table(title, ["layer", "class", "channels", "MMACs per RoI", "params"], rows))
    for line in heads.lines():
        _console.output_console.print(line)


def _method_settings(arguments: argparse.Namespace) -> dict:
    """The options the user gave that are settings of the chosen method; a given option the method does not take is an error."""
    from segprune.api import STRUCTURED_SETTINGS

    allowed = STRUCTURED_SETTINGS[arguments.method]
    settings, refused = {}, []
    for attribute, setting in _SETTING_OPTIONS.items():
        value = getattr(arguments, attribute)
        if value is None:
            continue
        if setting in allowed:
            settings[setting] = value
        else:
            refused.append("--" + attribute.replace("_", "-"))
    if refused:
        raise ValueError(f"--method {arguments.method} does not take {', '.join(refused)}; it takes the options for {list(allowed)}.")
    return settings


def _plan(arguments: argparse.Namespace, folder, detector: bool) -> str:
    from segprune.training.run_state import run_folder

    amount = f"to {arguments.target}" if arguments.target else f"by ratio {arguments.ratio}"
    if folder:
        where = f"; log and state in {folder}"
    else:  # a Mask R-CNN's prune keeps no resume state (its fine-tune checkpoints the best epoch in --out)
        where = "" if detector else f"; state in {run_folder(arguments.out)} until it finishes"
    return f"pruning {arguments.model} with {arguments.method} {amount}{where}"


def _print_plan(plan: dict) -> None:
    _console.progress_console.print(plan_line(plan))


def _print_candidate(record: dict, best: dict, metric: str = "val Dice") -> None:
    _console.progress_console.print(candidate_line(record, best, metric))


def _print_search(result: PruneResult, arguments: argparse.Namespace) -> None:
    from segprune.cost import parse_target

    search = result.search
    target = parse_target(arguments.target)
    if search.latency_source:
        _console.output_console.print(f"latency during the search: {search.latency_source}")
    line = f"{search.candidates} candidates in {search.seconds:.0f}s; estimated {search.resource_fraction:.3f} of the dense {target.resource}"
    measured = search.measured
    if measured:
        line += (
            f"; timed on {arguments.runtime or 'onnxruntime'} {arguments.precision or 'fp32'} (1x{format_size(arguments.image_size)}): "
            f"{measured['dense_ms']:.2f} ms -> {measured['pruned_ms']:.2f} ms ({measured['speedup']:.2f}x)"
        )
    _console.output_console.print(line)
    if measured and target.resource == "latency":
        verdict = "meets" if measured["latency_fraction"] <= target.fraction else "MISSES"
        _console.output_console.print(f"timed latency fraction {measured['latency_fraction']:.3f} {verdict} the budget {target.fraction:g}")
