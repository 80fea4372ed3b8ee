"""`segprune evaluate`: Dice, IoU and pixel accuracy of one or more models over a whole split."""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING

from segprune.cli import _console
from segprune.cli._common import add_data_options, add_loading_options, read_data, read_model, refuse_mask_options

if TYPE_CHECKING:
    from segprune.metrics import Evaluation

DESCRIPTION = (
    "Dice, IoU and pixel accuracy over a whole split, overall and per class, each with a 95% interval from a bootstrap over "
    "the split's images; mask AP, AP50, AP75 and the DSB score for a Mask R-CNN."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".keras or .h5 model files")
    add_data_options(parser)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--json", action="store_true", help="one JSON object per model per line")
    parser.add_argument(
        "--instances", action="store_true",
        help="every MODEL is a Mask R-CNN scored on DATA's instances/ (a Mask R-CNN file is recognised without it; with it, other files are refused)",
    )
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    from segprune.data import CLASS_NAMES
    from segprune.intervals import RESAMPLES
    from segprune.metrics import evaluate
    from segprune.models.mask_rcnn import is_mask_rcnn_file

    instance_paths = [path for path in arguments.models if arguments.instances or is_mask_rcnn_file(path)]
    if instance_paths:
        _evaluate_detectors(arguments, instance_paths)
    paths = [path for path in arguments.models if path not in instance_paths]
    if not paths:
        return 0
    data = read_data(arguments)
    names = CLASS_NAMES.get(data.name) or tuple(f"class {index}" for index in range(data.num_classes))
    scored = []
    for path in paths:
        model = read_model(arguments, path)
        scores = evaluate(model, data, arguments.split)
        if arguments.json:
            row = {"model": path, "split": arguments.split, **scores.to_dict(), "class_names": list(names), "params": model.count_params()}
            print(json.dumps({key: json_number(value) for key, value in row.items()}), flush=True)
        scored.append((path, scores, model.count_params()))
    if not arguments.json:
        _print_tables(data.name, arguments.split, names, scored, RESAMPLES)
    return 0


def _print_tables(data_name: str, split: str, names: tuple[str, ...], scored: list[tuple[str, Evaluation, int]], resamples: int) -> None:
    """The models side by side, then each model's per-class Dice and IoU when there are more than two classes."""
    columns = ["model", "dice [95%]", "foreground iou [95%]", "iou [95%]", "pixel_accuracy [95%]", "images", "params"]
    rows = [
        [path, _with_interval(s.dice, s.dice_interval), _with_interval(s.foreground_iou, s.foreground_iou_interval),
         _with_interval(s.iou, s.iou_interval), _with_interval(s.pixel_accuracy, s.pixel_accuracy_interval), s.num_images, params]
        for path, s, params in scored
    ]
    _console.output_console.print(_console.table(f"{data_name}, split {split}", columns, rows))
    for path, scores, _ in scored:
        if len(names) <= 2:
            continue
        per_class = [
            [names[index], _with_interval(dice, dice_interval), _with_interval(iou, iou_interval)]
            for index, (dice, dice_interval, iou, iou_interval) in enumerate(
                zip(scores.dice_per_class, scores.dice_per_class_interval, scores.iou_per_class, scores.iou_per_class_interval)
            )
        ]
        _console.output_console.print(_console.table(f"{path}: per class", ["class", "dice [95%]", "iou [95%]"], per_class))
    _console.output_console.print(
        f"dice and foreground iou: means over the classes other than background; iou: over all classes. [95%]: bootstrap "
        f"over the {split} images ({scored[0][1].num_images} of them, {resamples} resamples)."
    )


def _with_interval(value: float, interval) -> str:
    if math.isnan(value):
        return "- (class absent)"
    return f"{value:.4f} {interval}"


def _evaluate_detectors(arguments: argparse.Namespace, paths: list[str]) -> None:
    from segprune.data.instances import load_instance_data
    from segprune.instance_metrics import evaluate_instances
    from segprune.models.mask_rcnn import load_mask_rcnn

    detectors = {path: load_mask_rcnn(path) for path in paths}  # every file is checked before any scoring
    refuse_mask_options(arguments, "a Mask R-CNN")
    data = load_instance_data(arguments.data)
    rows = []
    for path, detector in detectors.items():
        scores = evaluate_instances(detector, data, arguments.split)
        row = {"model": path, "split": arguments.split, **scores, "params": detector.count_params()}
        if arguments.json:
            print(json.dumps({key: json_number(value) for key, value in row.items()}), flush=True)
        rows.append(row)
    if not arguments.json:
        columns = ["model", "ap", "ap50", "ap75", "dsb", "params"]
        _console.output_console.print(_console.table(f"{data.name} instances, split {arguments.split}", columns, [[row[c] for c in columns] for row in rows]))


def json_number(value):
    """NaN (an undefined score) as JSON null, in lists too."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [json_number(item) for item in value]
    return value
