"""`segprune export`: export a model to a deployment format and verify it against Keras."""

from __future__ import annotations

import argparse

from segprune.cli import _console
from segprune.cli._choices import EXPORT_FORMATS
from segprune.cli._common import add_data_options, add_loading_options, input_shape_argument, read_data, read_model, refuse_mask_options

DESCRIPTION = (
    "Export to ONNX, OpenVINO IR or LiteRT and check it against Keras; a Mask R-CNN exports whole (proposals, NMS, RoIAlign, "
    "heads and mask pasting in one graph) unless --trunk-only."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".keras or .h5 model file")
    parser.add_argument("--format", default="onnx", choices=EXPORT_FORMATS)
    add_data_options(parser, default=None, help_suffix="; its test images are checked too")
    parser.add_argument(
        "--input-shape", default=None, type=input_shape_argument, metavar="BxHxW",
        help="fix the input shape, BxHxW (e.g. 1x256x256 or 1x256x512), and fold the shape arithmetic; default: dynamic batch, height and "
        "width (a whole Mask R-CNN is always fixed: default 1xHxW of the --data test images, else 1x256x256)",
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-4,
        help="largest allowed difference (default 1e-4); for a whole Mask R-CNN, of a detection's score (the same objects and classes, "
        "boxes within 0.01 px and every mask IoU >= 0.9 are required too)",
    )
    parser.add_argument(
        "--trunk-only", action="store_true",
        help="a Mask R-CNN: export only its trunk (encoder, FPN, shared RPN head; every output verified), any format; proposals, NMS, "
        "RoIAlign, the heads and mask pasting then run in Python (MaskRCNN.detect)",
    )
    parser.add_argument("--out", required=True, help="the exported file (.onnx, .tflite, or .xml for OpenVINO, its weights in a .bin beside it)")
    add_loading_options(parser)


def run(arguments: argparse.Namespace) -> int:
    from segprune._io import check_output
    from segprune.models.mask_rcnn import is_mask_rcnn_file, load_mask_rcnn
    from segprune.models.sam import image_encoder, is_sam
    from segprune.runtime.export import export_model

    check_output(arguments.out, arguments.model, suffix=None)
    mask_rcnn = is_mask_rcnn_file(arguments.model)
    if arguments.trunk_only and not mask_rcnn:
        raise ValueError(f"--trunk-only exports a Mask R-CNN's trunk; {arguments.model} is not a Mask R-CNN. Leave it out to export the whole model.")
    if mask_rcnn and not arguments.trunk_only:
        return _export_detector(arguments)
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
            f"Mask R-CNN: its trunk (encoder, FPN, shared RPN head; {len(model.outputs)} outputs, each verified) is exported (--trunk-only); "
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


def _export_detector(arguments: argparse.Namespace) -> int:
    """The whole Mask R-CNN as one ONNX or OpenVINO graph, kept only if it finds `MaskRCNN.detect`'s objects."""
    from segprune.inference import measurement_size
    from segprune.models.mask_rcnn import load_mask_rcnn
    from segprune.runtime.detector_export import DETECTOR_FORMATS, DetectionTolerance, export_detector

    if arguments.format not in DETECTOR_FORMATS:
        raise ValueError(
            f"A whole Mask R-CNN exports to {' or '.join(DETECTOR_FORMATS)} (its NMS and RoIAlign run as those runtimes' own operations); "
            f"got --format {arguments.format}. Choose --format onnx or openvino, or add --trunk-only to export the trunk alone."
        )
    model = load_mask_rcnn(arguments.model)
    samples = _instance_samples(arguments, model.trunk) if arguments.data else []
    if arguments.input_shape is not None:
        shape = arguments.input_shape
    else:  # the size the test images have, which is what the detector will see
        shape = (1, *(samples[0].shape[:2] if samples else measurement_size(model.trunk)))
    size = tuple(shape[-3:-1]) if len(shape) == 4 else tuple(shape[-2:])
    checked = [sample for sample in samples if tuple(sample.shape[:2]) == size]
    agreement = export_detector(
        model, arguments.out, arguments.format, input_shape=shape, samples=checked, tolerance=DetectionTolerance(score=arguments.tolerance)
    )
    skipped = f" ({len(samples) - len(checked)} test image(s) of another size not checked)" if len(checked) < len(samples) else ""
    _console.output_console.print(
        "Mask R-CNN: the whole detector (proposals, NMS, RoIAlign, the box and mask heads, mask pasting; detections padded to "
        f"{model.config.max_detections} per image, outputs boxes, scores, class_ids, masks, num_detections) is exported; --trunk-only "
        "exports the trunk alone."
    )
    _console.output_console.print(
        f"{arguments.format} detector (input fixed to {'x'.join(map(str, shape))}) written to {arguments.out}; against MaskRCNN.detect on "
        f"a random batch and {len(checked)} test image(s){skipped}: {agreement}",
        markup=False,
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
