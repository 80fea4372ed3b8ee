"""`segprune quantize`: int8 post-training quantization for a runtime, checked on the test split."""

from __future__ import annotations

import argparse
import json

from segprune.cli import _console
from segprune.cli._choices import QUANTIZE_PRECISIONS, QUANTIZE_RUNTIMES
from segprune.cli._common import add_data_options, input_shape_argument, read_data

DESCRIPTION = (
    "int8 post-training quantization calibrated on the training tiles (or bf16 on OpenVINO); written only when its Dice "
    "on the test split stays within --tolerance points of the fp32 model."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".keras or .h5 model file")
    add_data_options(parser, help_suffix="; train split calibrates, test split checks")
    parser.add_argument("--runtime", default="onnxruntime", choices=QUANTIZE_RUNTIMES, help="runtime the int8 model is for (default onnxruntime)")
    parser.add_argument(
        "--input-shape", default=None, type=input_shape_argument, metavar="BxHxW",
        help="fixed input shape BxHxW, e.g. 1x256x256 or 1x256x512 (default: the size the model was built for, else the training tiles' size, at batch 1)",
    )
    parser.add_argument("--tolerance", type=float, default=1.0, help="Dice points the int8 model may lose (default 1.0)")
    parser.add_argument("--calibration-tiles", type=int, default=300, help="most training tiles used for calibration (default 300)")
    parser.add_argument("--threads", type=int, default=2, help="threads the int8 model is checked with (default 2)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument(
        "--precision", default="int8", choices=QUANTIZE_PRECISIONS,
        help="int8 (default), or bf16: an OpenVINO IR compiled for bf16 (CPUs with AVX512_BF16 or AMX), checked the same way",
    )
    parser.add_argument("--out", required=True, help="the int8 file: .onnx (onnxruntime), .xml (openvino) or .tflite (litert)")


def run(arguments: argparse.Namespace) -> int:
    from segprune._io import check_output
    from segprune.runtime.quantize import quantize

    check_output(arguments.out, arguments.model, suffix=None)
    result = quantize(
        arguments.model, read_data(arguments), arguments.runtime, out=arguments.out, input_shape=arguments.input_shape,
        tolerance=arguments.tolerance, calibration_tiles=arguments.calibration_tiles, threads=arguments.threads,
        precision=arguments.precision,
    )
    if arguments.json:
        print(json.dumps(result.to_dict()), flush=True)
        return 0
    _console.output_console.print(
        f"{result.precision} {result.runtime} model written to {result.path} ({result.method}); runs in {result.executed_precision}; "
        f"input {'x'.join(map(str, result.input_shape))}, {result.calibration_tiles} calibration tiles\n"
        f"test split ({result.test_images} images): masks agree with fp32 on {100 * result.mask_agreement:.2f}% of pixels; "
        f"Dice fp32 {result.dice_fp32:.4f}, {result.precision} {result.dice_quantized:.4f} ({result.dice_drop_points:+.2f} points lost, "
        f"tolerance {result.tolerance:g})"
    )
    return 0
