"""`segprune export`: export a model to a deployment format and verify it against Keras."""

from __future__ import annotations

import argparse

from segprune._io import check_output
from segprune.cli import _console
from segprune.cli._common import (  # noqa: F401  (USER_ERRORS is read by segprune.cli.main)
    DATA_HELP,
    USER_ERRORS,
    add_loading_options,
    read_model,
)
from segprune.data import adapt_channels, load_data
from segprune.inference import input_channels, pad_to_multiple
from segprune.runtime.export import FORMATS, export_model, parse_input_shape

DESCRIPTION = "Export to ONNX, OpenVINO IR or LiteRT and check it against Keras."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".keras or .h5 model file")
    parser.add_argument("--format", default="onnx", choices=sorted(FORMATS))
    parser.add_argument("--data", default=None, help=DATA_HELP + "; its test images are checked too")
    parser.add_argument(
        "--input-shape", default=None, type=parse_input_shape, metavar="BxHxW",
        help="fix the input shape (e.g. 1x256x256) and fold the shape arithmetic; default: dynamic batch, height and width",
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed difference (default 1e-4)")
    parser.add_argument("--out", required=True, help="the exported file (.onnx, .tflite, or .xml for OpenVINO, its weights in a .bin beside it)")
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    check_output(arguments.out, arguments.model, suffix=None)
    model = read_model(arguments, arguments.model)
    samples = []
    if arguments.data:
        data = load_data(arguments.data)
        samples = [pad_to_multiple(adapt_channels(image, input_channels(model)), 32) for _, image, _ in data.samples("test")][:4]
    difference = export_model(model, arguments.out, arguments.format, arguments.tolerance, samples, input_shape=arguments.input_shape)
    shape = f" (input fixed to {'x'.join(map(str, arguments.input_shape))})" if arguments.input_shape else ""
    _console.output_console.print(
        f"{arguments.format} model{shape} written to {arguments.out}; largest difference from Keras {difference:.3g} "
        f"over {1 + len(samples)} input(s) (tolerance {arguments.tolerance:g})"
    )
    return 0
