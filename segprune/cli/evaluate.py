"""`segprune evaluate`: Dice, IoU and pixel accuracy of one or more models over a whole split."""

from __future__ import annotations

import argparse
import json
import math

from segprune.cli import _console
from segprune.cli._common import DATA_HELP, add_loading_options, read_model

DESCRIPTION = "Dice, IoU and pixel accuracy over a whole split; mask AP, AP50, AP75 and the DSB score for a Mask R-CNN."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".keras or .h5 model files")
    parser.add_argument("--data", default="nuclei", help=DATA_HELP)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--json", action="store_true", help="one JSON object per model per line")
    parser.add_argument(
        "--instances", action="store_true",
        help="every MODEL is a Mask R-CNN scored on DATA's instances/ (a Mask R-CNN file is recognised without it; with it, other files are refused)",
    )
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    from segprune.data import load_data
    from segprune.metrics import evaluate
    from segprune.models.mask_rcnn import is_mask_rcnn_file

    instance_paths = [path for path in arguments.models if arguments.instances or is_mask_rcnn_file(path)]
    if instance_paths:
        _evaluate_detectors(arguments, instance_paths)
    paths = [path for path in arguments.models if path not in instance_paths]
    if not paths:
        return 0
    data = load_data(arguments.data)
    rows = []
    for path in paths:
        model = read_model(arguments, path)
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
            print(json.dumps({key: json_number(value) for key, value in row.items()}), flush=True)
        rows.append(row)
    if not arguments.json:
        columns = ["model", "dice", "iou", "pixel_accuracy", "params"]
        _console.output_console.print(_console.table(f"{data.name}, split {arguments.split}", columns, [[row[c] for c in columns] for row in rows]))
    return 0


def _evaluate_detectors(arguments: argparse.Namespace, paths: list[str]) -> None:
    from segprune.data.instances import load_instance_data
    from segprune.instance_metrics import evaluate_instances
    from segprune.models.mask_rcnn import load_mask_rcnn

    detectors = {path: load_mask_rcnn(path) for path in paths}  # every file is checked before any scoring
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
