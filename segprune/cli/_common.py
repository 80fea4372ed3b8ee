"""What several commands share: help texts, the errors a user can fix, and printed summaries.

Importing it starts no framework (`segprune COMMAND --help` reads it): the functions that need the package's
Keras side import it when called.
"""

from __future__ import annotations

import argparse
import importlib
from typing import TYPE_CHECKING

from segprune import defaults
from segprune.cli import _console

if TYPE_CHECKING:  # annotations only
    from collections.abc import Sequence

    import keras

    from segprune.data import DataSource, SegmentationDataset
    from segprune.metrics import Evaluation
    from segprune.structured.summary import PruningSummary
    from segprune.training import DistillConfig

DATA_HELP = (
    "'nuclei' (built-in real microscopy tiles, binary; the default), 'brain' (built-in real MRI slices, 9 anatomical classes), "
    "'synthetic' (generated, multi-class) "
    "or a folder: images/ and masks/ (masks named like the image, or by --mask-pattern), split folders such as "
    "train/ and train_masks/, Pascal VOC, Cityscapes, or Oxford-IIIT Pet"
)


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "your input is wrong": printed as one line with exit status 2, never as a traceback."""
    from segprune._io import OutputWriteError
    from segprune._lock import OutputLocked
    from segprune.data import DataError
    from segprune.graph import UnsupportedLayerError
    from segprune.models import ModelFileError
    from segprune.runtime.export import ExportMismatchError
    from segprune.runtime.quantize import QuantizationRefused
    from segprune.training import TrainingDiverged

    return (
        ValueError, FileNotFoundError, OutputWriteError, OutputLocked, DataError, ModelFileError, UnsupportedLayerError, ExportMismatchError,
        QuantizationRefused, TrainingDiverged,
    )


def input_shape_argument(text: str) -> tuple[int, ...]:
    """`--input-shape`'s parser: argparse prints an `ArgumentTypeError`'s own message (a `ValueError`'s it hides)."""
    from segprune.runtime.export import parse_input_shape

    try:
        return parse_input_shape(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def image_size_argument(text: str) -> tuple[int, int]:
    """`--image-size`'s parser: N (square) or HxW, as (height, width); bad text is one argparse error showing both forms."""
    from segprune.sizes import parse_image_size

    try:
        return parse_image_size(text, name="")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


IMAGE_SIZE_METAVAR = "N|HxW"


def add_data_options(parser: argparse.ArgumentParser, default: str | None = "nuclei", required: bool = False, help_suffix: str = "") -> None:
    """--data DATA and how its masks are read: --num-classes, --ignore-index, --mask-pattern (every command that takes DATA)."""
    parser.add_argument("--data", default=None if required else default, required=required, help=DATA_HELP + help_suffix)
    parser.add_argument("--num-classes", type=int, default=None, metavar="N", help="classes including background (default: read from the masks)")
    parser.add_argument(
        "--ignore-index", type=int, default=None, metavar="VALUE",
        help="mask value that losses and metrics skip, e.g. 255 (the Pascal VOC and Cityscapes 'void' label; default none)",
    )
    parser.add_argument(
        "--mask-pattern", default=None, metavar="PATTERN",
        help="a mask's file name made from its image's stem, e.g. '{stem}_mask.png' (default: the same stem, or a suffix "
        "such as _mask, _label or _seg found on its own)",
    )


def read_data(arguments: argparse.Namespace, source: str | None = None) -> SegmentationDataset:
    """`load_data(--data)` with the mask options given, printing what was changed in reading (0/255 masks read as 0/1)."""
    from segprune.data import load_data

    options = {"num_classes": arguments.num_classes, "ignore_index": arguments.ignore_index, "mask_pattern": arguments.mask_pattern}
    data = load_data(arguments.data if source is None else source, **options)
    for note in data.notes:
        _console.progress_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    return data


def data_source(arguments: argparse.Namespace) -> str | DataSource:
    """--data as worker processes load it: the name alone, or with the mask options given."""
    from segprune.data import DataSource

    options = tuple((name, getattr(arguments, name)) for name in ("num_classes", "ignore_index", "mask_pattern") if getattr(arguments, name) is not None)
    return DataSource(arguments.data, options) if options else arguments.data


def refuse_mask_options(arguments: argparse.Namespace, reason: str) -> None:
    """Instance data (instances/, COCO JSON) has no class masks to read: --num-classes and the like are refused, not ignored."""
    given = [flag for flag, value in (("--num-classes", arguments.num_classes), ("--ignore-index", arguments.ignore_index), ("--mask-pattern", arguments.mask_pattern)) if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} read class masks; {reason} reads instance labels (instances/ or a COCO JSON file). Leave them out.")


def add_distill_options(parser: argparse.ArgumentParser) -> None:
    """--distill / --no-distill, --temperature, --distill-weight: fine-tuning learns from the dense model too."""
    parser.add_argument(
        "--distill", action=argparse.BooleanOptionalAction, default=defaults.DISTILL,
        help=f"fine-tune with knowledge distillation from the dense model (its soft masks next to the ground truth; default {'on' if defaults.DISTILL else 'off'})",
    )
    parser.add_argument(
        "--temperature", type=float, default=defaults.DISTILL_TEMPERATURE, help=f"distillation temperature (default {defaults.DISTILL_TEMPERATURE})"
    )
    parser.add_argument(
        "--distill-weight", type=float, default=defaults.DISTILL_WEIGHT,
        help=f"share of the distillation term in the loss (default {defaults.DISTILL_WEIGHT})",
    )


def distill_config(arguments: argparse.Namespace) -> DistillConfig | None:
    from segprune.training import DistillConfig

    return DistillConfig(arguments.temperature, arguments.distill_weight) if arguments.distill else None


def add_loading_options(parser: argparse.ArgumentParser) -> None:
    """--custom-objects MODULE and --unsafe-lambda: loading model files that need code of their own."""
    parser.add_argument(
        "--custom-objects", metavar="MODULE", default=None,
        help="an importable Python module whose classes and functions the model file needs (e.g. mypackage.layers)",
    )
    parser.add_argument(
        "--unsafe-lambda", action="store_true",
        help="load Lambda layers: their stored bytecode runs on load, so only for files you trust",
    )


def read_model(arguments: argparse.Namespace, path: str) -> keras.Model:
    """The user's model file, with the custom objects and the Lambda opt-in the command line gave."""
    from segprune.models import load_model

    return load_model(path, custom_objects=custom_objects(arguments.custom_objects), safe_mode=not arguments.unsafe_lambda)


def custom_objects(module_name: str | None) -> dict | None:
    """The public classes and functions of an importable module, by name (None for no module)."""
    if module_name is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"--custom-objects {module_name!r} cannot be imported ({error}); give a module on the Python path, "
            "e.g. run from the folder that holds it or install its package."
        ) from None
    objects = {name: value for name, value in vars(module).items() if not name.startswith("_") and (isinstance(value, type) or callable(value))}
    if not objects:
        raise ValueError(f"--custom-objects {module_name!r} defines no public classes or functions to load a model with.")
    return objects


def layer_names(text: str) -> list[str]:
    """`"a,b,"` -> ["a", "b"]."""
    return [name for name in text.split(",") if name]


def print_pruning_summary(summary: PruningSummary, method: str) -> None:
    rows = [
        [c.name, c.class_name, f"{c.channels_before} -> {c.channels_after}", f"{c.macs_before / 1e6:.1f} -> {c.macs_after / 1e6:.1f}",
         f"{c.params_before:,} -> {c.params_after:,}"]
        for c in summary.changed_layers()
        if c.macs_before
    ]
    _console.output_console.print(_console.table(f"pruned layers ({method})", ["layer", "class", "channels", "MMACs", "params"], rows))
    height, width = summary.input_shape[:2]
    _console.output_console.print(
        f"MACs at {height}x{width}: {summary.macs_before / 1e6:.1f}M -> {summary.macs_after / 1e6:.1f}M "
        f"({summary.macs_ratio:.3f}); parameters: {summary.params_before:,} -> {summary.params_after:,} ({summary.params_ratio:.3f})"
    )
    for line in summary.pinned_lines():
        _console.output_console.print(line, markup=False, soft_wrap=True)


def print_test_scores(before: Evaluation, after: Evaluation, label: str) -> None:
    """The dense and the `label` (pruned, sparse) model's test Dice with intervals, and the paired loss between them."""
    loss = after.loss_against(before)
    if loss.high < 0:  # the whole interval below zero: the pruned model scores higher
        change = f"gained {-100 * loss.loss:.2f} Dice points [{-100 * loss.high:.2f}, {-100 * loss.low:.2f}]"
    else:
        change = f"lost {100 * loss.loss:.2f} Dice points [{100 * loss.low:.2f}, {100 * loss.high:.2f}]"
        change += " (no measurable difference)" if loss.low <= 0 else ""
    _console.output_console.print(
        f"test Dice: dense {before.dice:.4f} {before.dice_interval}, {label} {after.dice:.4f} {after.dice_interval}; "
        f"{change} paired (95% bootstrap over the {loss.num_images} test images)", markup=False,
    )


def print_balance(balance: dict | None, tolerance: float, rows: Sequence[dict] = ()) -> None:
    """The balance point with its Dice interval and paired loss, and the faster rows the test images cannot judge."""
    from segprune.report.tables import indistinguishable_from_dense, loss_interval, undecided_rows

    if balance is None or balance["method"] == "dense":
        _console.output_console.print(f"balance point: no pruned network surely stays within {tolerance:g} Dice points of dense")
    else:
        interval = balance.get("dice_interval")
        dice = f"{balance['dice']:.4f}" + ("" if not interval or None in interval else f" [{interval[0]:.4f}, {interval[1]:.4f}]")
        loss = loss_interval(balance)
        lost = "" if loss is None else f", {100 * balance['dice_loss']:.2f} points below dense [{100 * loss[0]:.2f}, {100 * loss[1]:.2f}] paired"
        _console.output_console.print(
            f"balance point: {balance['method']} at MACs budget {balance['budget']}: Dice {dice}{lost}, "
            f"{balance['latency_ms']:.2f} ms, {balance['speedup']:.2f}x faster than dense (tolerance {tolerance:g} Dice points)", markup=False
        )
        if indistinguishable_from_dense(balance):
            _console.output_console.print("  its loss interval holds zero: on these test images it cannot be told apart from dense")
    for row in undecided_rows(list(rows), balance, tolerance):
        low, high = loss_interval(row)
        _console.output_console.print(
            f"  cannot tell: {row['method']} at {row['budget']} is faster ({row['latency_ms']:.2f} ms) but its loss interval "
            f"[{100 * low:.2f}, {100 * high:.2f}] points crosses the tolerance; not chosen", markup=False
        )
    if rows and any(loss_interval(row) is not None for row in rows):
        images = next((row.get("num_images") for row in rows if row.get("num_images")), None)
        _console.output_console.print(
            f"  [low, high]: 95% bootstrap intervals over the {images} test images; losses paired (same images for both models)", markup=False
        )
