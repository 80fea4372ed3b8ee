"""`segprune evaluate`: Dice, IoU and pixel accuracy of one or more models over a whole split."""

from __future__ import annotations

import argparse
import json
import math

from segprune.cli import _console
from segprune.cli._common import (  # noqa: F401  (USER_ERRORS is read by segprune.cli.main)
    DATA_HELP,
    USER_ERRORS,
    add_loading_options,
    read_model,
)
from segprune.data import load_data
from segprune.metrics import evaluate

DESCRIPTION = "Dice, IoU and pixel accuracy over a whole split."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".keras or .h5 model files")
    parser.add_argument("--data", default="nuclei", help=DATA_HELP)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--json", action="store_true", help="one JSON object per model per line")
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    data = load_data(arguments.data)
    rows = []
    for path in arguments.models:
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


def json_number(value):
    """NaN (an undefined score) as JSON null, in lists too."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [json_number(item) for item in value]
    return value
