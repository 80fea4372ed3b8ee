"""`segprune export`: export a model to a deployment format and verify it against Keras."""

from __future__ import annotations

import argparse

from segprune.cli import _console
from segprune.cli._choices import EXPORT_FORMATS
from segprune.cli._common import add_data_options, add_loading_options, input_shape_argument, read_data, read_model, refuse_mask_options

DESCRIPTION = "Export to ONNX, OpenVINO IR or LiteRT and check it against Keras."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".keras or .h5 model file")
    parser.add_argument("--format", default="onnx", choices=EXPORT_FORMATS)
    add_data_options(parser, default=None, help_suffix="; its test images are checked too")
    parser.add_argument(
        "--input-shape", default=None, type=input_shape_argument, metavar="BxHxW",
        help="fix the input shape, BxHxW (e.g. 1x256x256 or 1x256x512), and fold the shape arithmetic; default: dynamic batch, height and width",
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed difference (default 1e-4)")
    parser.add_argument("--out", required=True, help="the exported file (.onnx, .tflite, or .xml for OpenVINO, its weights in a .bin beside it)")
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    from segprune._io import check_output
    from segprune.models.mask_rcnn import is_mask_rcnn_file, load_mask_rcnn
    from segprune.models.sam import image_encoder, is_sam
    from segprune.runtime.export import export_model

    check_output(arguments.out, arguments.model, suffix=None)
    mask_rcnn = is_mask_rcnn_file(arguments.model)
    model = load_mask_rcnn(arguments.model).trunk if mask_rcnn else read_model(arguments, arguments.model)
    sam = is_sam(model)
    if sam:  # the encoder runs once per image; the prompt encoder and mask decoder once per prompt, in Keras
        model = image_encoder(model)
    samples = []
    if arguments.data:
        samples = _instance_samples(arguments, model) if mask_rcnn else _samples(arguments, model)
    difference = export_model(model, arguments.out, arguments.format, arguments.tolerance, samples, input_shape=arguments.input_shape)
    shape = f" (input fixed to {'x'.join(map(str, arguments.input_shape))})" if arguments.input_shape else ""
    if mask_rcnn:
        _console.output_console.print(
            f"Mask R-CNN: its trunk (encoder, FPN, shared RPN head; {len(model.outputs)} outputs, each verified) is exported; "
            "proposal decoding, NMS, RoIAlign, the RoI heads and mask pasting run in Python (MaskRCNN.detect)."
        )
    if sam:
        _console.output_console.print(
            "Segment Anything: its image encoder (images to embeddings) is exported; the prompt encoder and mask decoder "
            "run per prompt in Keras."
        )
    _console.output_console.print(
        f"{arguments.format} model{shape} written to {arguments.out}; largest difference from Keras {difference:.3g} "
        f"over {1 + len(samples)} input(s) (tolerance {arguments.tolerance:g})"
    )
    return 0


def _samples(arguments: argparse.Namespace, model) -> list:
    from segprune.data import adapt_channels
    from segprune.inference import input_channels, pad_to_multiple

    data = read_data(arguments)
    return [pad_to_multiple(adapt_channels(image, input_channels(model)), 32) for _, image, _ in data.samples("test")][:4]


def _instance_samples(arguments: argparse.Namespace, trunk) -> list:
    from segprune.data import adapt_channels
    from segprune.data.instances import load_instance_data
    from segprune.inference import input_channels

    refuse_mask_options(arguments, "a Mask R-CNN")
    data = load_instance_data(arguments.data)
    return [adapt_channels(image, input_channels(trunk)) for _, image, _ in data.samples("test")][:4]
