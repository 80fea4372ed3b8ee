"""`segprune classical`: a classical baseline scored like the networks."""

from __future__ import annotations

import argparse
import json

from segprune.cli import _console
from segprune.cli._choices import CLASSICAL_MAPPINGS, CLASSICAL_METHODS
from segprune.cli._common import add_data_options, read_data
from segprune.cli.evaluate import json_number

DESCRIPTION = "Canny, Sobel, Otsu, watershed, K-means or DBSCAN, scored like the networks."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=CLASSICAL_METHODS)
    add_data_options(parser)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--mapping", default="bright", choices=CLASSICAL_MAPPINGS, help="cluster-to-class rule for kmeans/dbscan; oracle peeks at the truth")
    parser.add_argument("--json", action="store_true", help="one JSON object")


def run(arguments: argparse.Namespace) -> int:
    from segprune.classical import evaluate_classical

    result = evaluate_classical(arguments.method, read_data(arguments), arguments.split, mapping=arguments.mapping)
    row = result.to_dict()
    if arguments.json:
        print(json.dumps({key: json_number(value) for key, value in row.items()}))
        return 0
    scores = [_with_interval(row[name], row[f"{name}_interval"]) for name in ("dice", "iou", "pixel_accuracy")]
    _console.output_console.print(_console.table(
        f"classical baseline, split {arguments.split}: {result.num_images} images, 95% bootstrap intervals",
        ["method", "mapping", "dice", "iou", "pixel_accuracy", "ms_per_image"],
        [[row["method"], row["mapping"], *scores, f"{row['ms_per_image']:.1f}"]],
    ))
    if result.collapsed_to_binary:
        _console.output_console.print("note: the dataset has more than two classes; scored as foreground vs background")
    return 0


def _with_interval(value: float, interval: list) -> str:
    low, high = interval
    return f"{value:.4f}" if low is None else f"{value:.4f} [{low:.4f}, {high:.4f}]"
