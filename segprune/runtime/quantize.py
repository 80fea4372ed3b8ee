"""int8 post-training quantization (or bf16 on OpenVINO), calibrated on the training tiles and checked on the test split.

One step after pruning: the model is exported at a fixed input shape (fp32, verified against Keras), quantized
for the runtime it ships on, then run on every test image next to the Keras model. The file is written only when
its Dice stays within `tolerance` Dice points of the fp32 model's; otherwise `QuantizationRefused`. The result
names the precision that executed, read back from the runtime (e.g. "int8 (fp32 fallback)": int8 convolutions,
the layers around them in fp32).

- `onnxruntime`: ONNX Runtime's static quantization, QDQ format, int8 weights per output channel, uint8
  activations, MinMax calibration (`onnxruntime.quantization.quantize_static`).
- `openvino`: NNCF's post-training quantization (`nncf.quantize`, OpenVINO's own tool) of the fp32 IR.

On both, the convolutions that read the image directly (no convolution before them) stay fp32 by default: they
see the raw pixels, whose 8-bit rounding costs the most mask agreement (nuclei U-Net at 1/4 of the MACs, OpenVINO:
99.64% -> 99.81%), and with 1-3 input channels they hold a negligible share of the MACs.
- `litert`: the TFLite converter's full-integer quantization (`representative_dataset`, int8 builtins only),
  float input and output.

bf16 (`precision="bf16"`, OpenVINO on CPUs with AVX512_BF16 or AMX) needs no calibration: the fp32 IR records
`INFERENCE_PRECISION_HINT` bf16, so OpenVINO runs its convolutions and matrix products in bf16 (weights and
activations rounded to 8 mantissa bits, fp32 accumulation) wherever the file is compiled.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from segprune.data import SegmentationDataset, adapt_channels, load_data
from segprune.inference import fixed_input_size, input_channels, pad_to_multiple, probabilities_to_classes, stitch_tiles, tiles_of
from segprune.metrics import ConfusionMatrix
from segprune.models import load_model
from segprune.models.outputs import output_kind
from segprune.runtime import _tensorflow
from segprune.runtime.export import (
    FORMATS,
    companion_files,
    export_model,
    onnx_to_openvino,
    open_runner,
    resolve_input_shape,
    staged_file,
)
from segprune.runtime.peak import detect_cpu

RUNTIMES = ("onnxruntime", "openvino", "litert")
METHODS = {
    "onnxruntime": "ONNX Runtime static QDQ: int8 weights per channel, uint8 activations, MinMax calibration",
    "openvino": "NNCF post-training quantization of the OpenVINO IR (int8 weights and activations)",
    "litert": "TFLite full-integer quantization (representative dataset, int8 builtins; float input and output)",
}
BF16_METHOD = "OpenVINO IR with INFERENCE_PRECISION_HINT bf16 recorded (fp32 weights; bf16 convolutions and matrix products)"
PRECISIONS = {"int8": RUNTIMES, "bf16": ("openvino",)}  # precision -> the runtimes that deploy it
_EXPORT_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino", "litert": "litert"}


class QuantizationRefused(RuntimeError):
    """The int8 (or bf16) model loses more Dice than the tolerance allows; nothing was written."""


@dataclass(frozen=True)
class QuantizationResult:
    """An int8 (or bf16) model written for `runtime`, and how it compares with its fp32 self on the test split."""

    path: str
    runtime: str
    method: str
    input_shape: tuple[int, ...]
    calibration_tiles: int
    test_images: int
    mask_agreement: float  # share of test pixels where the deployed model and fp32 predict the same class
    dice_fp32: float
    dice_quantized: float  # the deployed (int8 or bf16) model's Dice
    tolerance: float  # Dice points the deployed model may lose
    notes: tuple[str, ...] = field(default=())
    precision: str = "int8"  # asked: "int8" or "bf16"
    executed_precision: str = ""  # read back from the runtime, e.g. "int8 (fp32 fallback)"

    @property
    def dice_drop_points(self) -> float:
        return 100.0 * (self.dice_fp32 - self.dice_quantized)

    def to_dict(self) -> dict:
        return {**asdict(self), "dice_drop_points": self.dice_drop_points}


def quantize(
    model_or_path: keras.Model | str | Path,
    data: SegmentationDataset | str | Path,
    runtime: str = "onnxruntime",
    out: str | Path | None = None,
    input_shape: Sequence[int] | str | None = None,
    tolerance: float = 1.0,
    calibration_tiles: int = 300,
    threads: int = 2,
    float_input_convs: bool = True,
    precision: str = "int8",
) -> QuantizationResult:
    """Quantizes a model to int8 for `runtime`, calibrated on `data`'s training tiles, checked on its test split;
    or, with `precision="bf16"`, writes an OpenVINO IR that runs in bf16 and checks it the same way.

    Args:
        model_or_path: A Keras model or a `.keras`/`.h5` file.
        data: A dataset or anything `load_data` accepts ("nuclei", a folder).
        runtime: "onnxruntime" (writes .onnx), "openvino" (.xml + .bin) or "litert" (.tflite).
        out: Where to write the int8 model; None keeps it in a temporary folder that is removed (a dry run).
        input_shape: The fixed input shape, e.g. "1x256x256"; default: the first training image's size
            (padded to a multiple of 32) at batch 1. Images are cut into tiles of that shape (the last tile
            of a row or column overlaps its neighbour; smaller images are mirror-padded).
        tolerance: Dice points (1.0 = 0.01 Dice) the int8 (bf16) model may lose against the fp32 model.
        calibration_tiles: At most this many training tiles calibrate the activation ranges (int8).
        float_input_convs: Keep the convolutions that read the image (no convolution before them) in fp32
            (ONNX Runtime and OpenVINO; LiteRT's full-integer model has no float layers).
        precision: "int8", or "bf16" (OpenVINO, on a CPU with AVX512_BF16 or AMX).

    Raises:
        QuantizationRefused: The int8 (bf16) model's Dice on the test split is more than `tolerance` points
            below the fp32 model's; the message gives both and the mask agreement.

    Example:
        >>> result = quantize("runs/unet-pruned.keras", "nuclei", "openvino", out="runs/unet-int8.xml")
        >>> result.mask_agreement, result.dice_drop_points
        (0.998, 0.1)
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown quantization runtime {runtime!r}; choose one of {list(RUNTIMES)}.")
    check_precision(precision, runtime)
    if out is not None and Path(out).suffix != FORMATS[_EXPORT_FORMAT[runtime]]:
        raise ValueError(f"An {precision} model for {runtime} is a {FORMATS[_EXPORT_FORMAT[runtime]]} file; got {str(out)!r}.")
    if tolerance < 0:
        raise ValueError(f"tolerance is in Dice points the {precision} model may lose and cannot be negative; got {tolerance}.")
    if runtime == "litert":  # refused before any model is loaded or exported
        _tensorflow.check_int8_backend()
    model = model_or_path if isinstance(model_or_path, keras.Model) else load_model(model_or_path)
    dataset = data if isinstance(data, SegmentationDataset) else load_data(data)
    channels = input_channels(model)
    train_images = [adapt_channels(image, channels) for _, image, _ in dataset.samples("train")]
    if not train_images:
        raise ValueError(f"Dataset {dataset.name!r} has no training images to calibrate on.")
    if input_shape is None:  # the size the model was built for, else the first training image's (padded)
        height, width = fixed_input_size(model) or pad_to_multiple(train_images[0], 32).shape[:2]
        input_shape = (1, height, width)
    shape = resolve_input_shape(model, input_shape)
    calibration = calibration_batches(train_images, shape, calibration_tiles) if precision == "int8" else []
    if precision == "int8" and not calibration:
        raise ValueError(
            f"No calibration batch of {shape[0]} tiles could be cut from {len(train_images)} training images with at most "
            f"{calibration_tiles} tiles; raise calibration_tiles or lower the batch of input_shape."
        )
    with tempfile.TemporaryDirectory(prefix="segprune-quantize-") as folder:
        suffix = FORMATS[_EXPORT_FORMAT[runtime]]
        deployed_path = Path(folder) / f"{precision}{suffix}"
        if precision == "bf16":
            kept = []
            export_model(model, Path(folder) / "fp32.onnx", "onnx", input_shape=shape)
            onnx_to_openvino(Path(folder) / "fp32.onnx", deployed_path, precision="bf16")
        else:
            kept = _quantize_file(model, Path(folder), deployed_path, runtime, shape, calibration, float_input_convs)
        runner = open_runner(deployed_path, threads)
        agreement, dice_fp32, dice_quantized, images = _compare(model, runner, dataset, shape)
        result = QuantizationResult(
            path=str(out) if out is not None else "",
            runtime=runtime,
            method=BF16_METHOD if precision == "bf16" else METHODS[runtime],
            input_shape=tuple(int(v) for v in shape),
            calibration_tiles=sum(len(batch) for batch in calibration),
            test_images=images,
            mask_agreement=agreement,
            dice_fp32=dice_fp32,
            dice_quantized=dice_quantized,
            tolerance=tolerance,
            notes=(f"kept in fp32 (they read the image): {', '.join(kept)}",) if kept else (),
            precision=precision,
            executed_precision=runner.executed_precision,
        )
        if result.dice_drop_points > tolerance:
            advice = "Deploy fp32 or int8 instead," if precision == "bf16" else "Calibrate on more tiles, try another runtime,"
            raise QuantizationRefused(
                f"{precision} {runtime} model of {model.name!r} loses {result.dice_drop_points:.2f} Dice points on the test split "
                f"(fp32 {dice_fp32:.4f}, {precision} {dice_quantized:.4f}; masks agree on {100 * agreement:.2f}% of pixels), more than "
                f"the tolerance of {tolerance:g}; nothing was written. {advice} or raise the tolerance if that loss is acceptable."
            )
        if out is not None:
            with staged_file(out) as staged:
                for source, target in zip(companion_files(deployed_path), companion_files(staged)):
                    source.replace(target)
    return result


def check_precision(precision: str, runtime: str) -> None:
    """Refuses a precision the runtime does not deploy, or bf16 on a CPU without bf16 instructions (OpenVINO would
    quietly run it in fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown deploy precision {precision!r}; choose one of {list(PRECISIONS)}.")
    if runtime not in PRECISIONS[precision]:
        raise ValueError(f"{precision} deploys on {list(PRECISIONS[precision])}; got runtime {runtime!r}. Use --runtime openvino.")
    if precision == "bf16" and not detect_cpu().supports("bf16"):
        raise ValueError(
            f"This CPU ({detect_cpu().model_name}) has no AVX512_BF16 or AMX: OpenVINO would run a bf16 model in fp32. "
            "Deploy fp32 or int8 here."
        )


def calibration_batches(images: Sequence[np.ndarray], shape: tuple, limit: int) -> list[np.ndarray]:
    """Training images cut into tiles of `shape` (B, H, W, C), grouped into batches of B, at most `limit` tiles."""
    batch, height, width, _ = shape
    tiles = [tile for image in images for tile, _ in tiles_of(image, height, width)][:limit]
    return [np.stack(tiles[start : start + batch]) for start in range(0, len(tiles) - batch + 1, batch)]


def _quantize_file(
    model: keras.Model, folder: Path, int8_path: Path, runtime: str, shape: tuple, calibration: list[np.ndarray], float_input_convs: bool
) -> list[str]:
    """Writes the int8 model; returns the names of the convolutions kept in fp32."""
    if runtime == "litert":
        export_model(model, folder / "fp32.tflite", "litert", input_shape=shape)  # the fp32 graph converts and matches Keras
        _tensorflow.write_litert_int8(model, int8_path, shape, calibration)
        return []
    fp32_onnx = folder / "fp32.onnx"
    export_model(model, fp32_onnx, "onnx", input_shape=shape)
    if runtime == "onnxruntime":
        return quantize_onnx(fp32_onnx, int8_path, calibration, float_input_convs)
    return quantize_openvino(fp32_onnx, int8_path, calibration, float_input_convs)


_CONVOLUTIONS = frozenset({"Conv", "ConvTranspose", "Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData"})


def input_convolutions(nodes: Sequence[tuple[str, str, Sequence[str], Sequence[str]]]) -> list[str]:
    """Names of the convolutions no other convolution feeds: those that read the image itself.

    `nodes` are (name, op type, input ids, output ids) in topological order (ONNX nodes, OpenVINO ops); an
    input id no node produced (the graph input, a weight) carries no convolution.
    """
    after_convolution: set[str] = set()
    found = []
    for name, kind, inputs, outputs in nodes:
        fed = any(value in after_convolution for value in inputs)
        if kind in _CONVOLUTIONS and not fed:
            found.append(name)
        if kind in _CONVOLUTIONS or fed:
            after_convolution.update(outputs)
    return found


def quantize_onnx(fp32_path: str | Path, int8_path: str | Path, calibration: Sequence[np.ndarray], float_input_convs: bool = True) -> list[str]:
    """ONNX Runtime static QDQ quantization: int8 weights per output channel, uint8 activations (MinMax).

    Returns the convolutions kept in fp32 (those reading the image, when `float_input_convs`).
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = onnxruntime.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch.astype(np.float32)}

    with tempfile.TemporaryDirectory(prefix="segprune-qdq-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        kept = input_convolutions([(node.name, node.op_type, node.input, node.output) for node in graph.node]) if float_input_convs else []
        quantize_static(
            str(prepared),
            str(int8_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=kept,
        )
    return kept


def quantize_openvino(fp32_onnx: str | Path, int8_xml: str | Path, calibration: Sequence[np.ndarray], float_input_convs: bool = True) -> list[str]:
    """NNCF post-training quantization (OpenVINO's own tool) of the model converted from `fp32_onnx`.

    Returns the convolutions kept in fp32 (those reading the image, when `float_input_convs`).
    """
    import nncf
    import openvino

    with tempfile.TemporaryDirectory(prefix="segprune-nncf-") as folder:
        fp32_xml = Path(folder) / "fp32.xml"
        onnx_to_openvino(fp32_onnx, fp32_xml)
        fp32 = openvino.Core().read_model(str(fp32_xml))
        kept = input_convolutions([_openvino_node(op) for op in fp32.get_ordered_ops()]) if float_input_convs else []
        with _quiet_nncf(nncf):
            quantized = nncf.quantize(
                fp32, nncf.Dataset(list(calibration)), subset_size=len(calibration), ignored_scope=nncf.IgnoredScope(names=kept)
            )
    openvino.save_model(quantized, str(int8_xml), compress_to_fp16=False)
    return kept


@contextlib.contextmanager
def _quiet_nncf(nncf) -> Iterator[None]:
    """NNCF's INFO lines (the ignored scope, node by node) and its progress bars (printed through rich to stdout) kept out
    of segprune's own progress lines; its warnings and errors still show."""
    level = nncf.common.logging.logger.nncf_logger.level
    nncf.set_log_level(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nncf.set_log_level(level)


def _openvino_node(op) -> tuple[str, str, list[str], list[str]]:
    inputs = [f"{port.get_source_output().get_node().get_friendly_name()}:{port.get_source_output().get_index()}" for port in op.inputs()]
    outputs = [f"{op.get_friendly_name()}:{index}" for index in range(op.get_output_size())]
    return op.get_friendly_name(), op.get_type_name(), inputs, outputs


def _compare(model: keras.Model, runner, dataset: SegmentationDataset, shape: tuple) -> tuple[float, float, float, int]:
    """Mask agreement int8/fp32 and the Dice of each on the test split (images tiled to `shape`)."""
    kind = output_kind(model)
    channels = input_channels(model)
    fp32_matrix = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    int8_matrix = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    agreeing, pixels, images = 0, 0, 0
    for _, image, mask in dataset.samples("test"):
        image = adapt_channels(image, channels)
        fp32 = _predict_tiled(lambda batch: np.asarray(model(batch, training=False)), image, shape, kind)
        int8 = _predict_tiled(runner, image, shape, kind)
        fp32_matrix.update(mask, fp32)
        int8_matrix.update(mask, int8)
        agreeing += int(np.sum(fp32 == int8))
        pixels += fp32.size
        images += 1
    if not images:
        raise ValueError(f"Dataset {dataset.name!r} has no test images to check the int8 model on.")
    return agreeing / pixels, fp32_matrix.dice(), int8_matrix.dice(), images


def _predict_tiled(run, image: np.ndarray, shape: tuple, kind) -> np.ndarray:
    """Class map of an (H, W, C) image from a model of fixed `shape` (B, H, W, C), tile by tile."""
    batch, height, width, _ = shape
    return probabilities_to_classes(stitch_tiles(run, [image], (height, width), batch, fixed_batch=True)[0][None], kind)[0]
