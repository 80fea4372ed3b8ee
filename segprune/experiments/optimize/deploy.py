"""One model deployed for `optimize`: its files on the target runtime at every precision tried, each scored on the
test split as it runs (per-image counts, for the paired loss against dense) and timed side by side with dense.

Every file is scored the same way, the dense fp32 file included: its runner on the test images cut into tiles of
the fixed input shape, so the paired loss compares deployed files with deployed files. OpenVINO files record the
precision they were timed at (`INFERENCE_PRECISION_HINT`), fp32 included: unset, OpenVINO runs fp32 graphs in
bf16 on CPUs that have it, which is not what was timed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras

from segprune.data import SegmentationDataset, adapt_channels
from segprune.experiments.deployment import deployed_precisions
from segprune.inference import input_channels, probabilities_to_classes, stitch_tiles
from segprune.metrics import ConfusionMatrix, Evaluation
from segprune.models.outputs import output_kind
from segprune.runtime.benchmark import EXPORT_FORMATS, BenchmarkResult, benchmark_models
from segprune.runtime.export import FORMATS, export_model, open_runner, set_openvino_precision, staged_file
from segprune.runtime.quantize import QuantizationRefused, quantize

RUNTIMES = tuple(EXPORT_FORMATS)  # onnxruntime, openvino, litert
REFERENCE = "onnxruntime fp32"  # what a user without segprune deploys; speed-ups are given over it


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; optimize deploys to {list(RUNTIMES)} (--runtime onnxruntime|openvino|litert).")


def available_precisions(runtime: str, asked: Sequence[str] | None = None) -> tuple[str, ...]:
    """fp32 and the reduced precisions `runtime` deploys on this CPU (int8; bf16 on OpenVINO with AVX512_BF16 or AMX),
    or those of `asked`, refused when this runtime or CPU cannot run one. fp32 is always among them: the dense fp32
    file is the reference every loss is paired against, and what is deployed when nothing pruned qualifies."""
    here = ("fp32", *deployed_precisions(runtime))
    if asked is None:
        return here
    unknown = [precision for precision in asked if precision not in here]
    if unknown or not asked:
        raise ValueError(f"{runtime} deploys {list(here)} on this CPU; got precisions {list(asked)}. Leave --precision out to try them all.")
    return tuple(precision for precision in here if precision in asked or precision == "fp32")


def file_name(runtime: str, precision: str, stem: str = "model") -> str:
    """model.xml, model_int8.onnx, model_bf16.xml, ..."""
    suffix = FORMATS[EXPORT_FORMATS[runtime]]
    return f"{stem}{suffix}" if precision == "fp32" else f"{stem}_{precision}{suffix}"


def write_reference(model: keras.Model, folder: Path, shape: tuple, runtime: str) -> Path:
    """The dense model as a user deploys it without segprune: ONNX fp32 at the fixed shape, verified (on ONNX Runtime,
    the dense fp32 file itself)."""
    path = folder / ("model.onnx" if runtime == "onnxruntime" else "reference.onnx")
    if runtime != "onnxruntime":
        export_model(model, path, "onnx", input_shape=shape)
    return path


def write_files(
    model: keras.Model, data: SegmentationDataset, runtime: str, folder: Path, shape: tuple, precisions: Sequence[str], tolerance: float, threads: int,
) -> list[dict]:
    """`model` written for `runtime` at each precision into `folder`: `[{precision, file, refused}]` (file None when
    quantization refused it: its Dice against its own fp32 file fell by more than `tolerance` points)."""
    written = []
    for precision in precisions:
        path = folder / file_name(runtime, precision)
        refused = None
        if precision == "fp32":
            export_model(model, path, EXPORT_FORMATS[runtime], input_shape=shape)
        else:
            try:
                quantize(model, data, runtime, out=path, input_shape=shape, tolerance=tolerance, threads=threads, precision=precision)
            except QuantizationRefused as error:
                refused, path = str(error), None
        if path is not None and runtime == "openvino" and precision != "bf16":  # bf16 files record their hint already
            record_fp32(path)
        written.append({"precision": precision, "file": None if path is None else str(path), "refused": refused})
    return written


def record_fp32(xml_path: Path) -> None:
    """Records fp32 as the OpenVINO IR's inference precision (for int8 files: of the layers left in float)."""
    import openvino

    model = openvino.Core().read_model(str(xml_path))
    set_openvino_precision(model, "fp32")
    with staged_file(xml_path) as staged:
        openvino.save_model(model, str(staged), compress_to_fp16=False)


def score_file(path: str | Path, model: keras.Model, data: SegmentationDataset, threads: int) -> Evaluation:
    """The deployed file's scores on the test split, with intervals and per-image counts: each image cut into tiles
    of the file's fixed input shape, as `segprune quantize` checks its files."""
    runner = open_runner(path, threads)
    batch, height, width, _ = runner.input_shape
    kind, channels = output_kind(model), input_channels(model)
    matrix = ConfusionMatrix(data.num_classes, data.ignore_index)
    images = 0
    for _, image, mask in data.samples("test"):
        outputs = stitch_tiles(runner, [adapt_channels(image, channels)], (height, width), batch, fixed_batch=True)[0]
        matrix.update(mask, probabilities_to_classes(outputs[None], kind)[0])
        images += 1
    if not images:
        raise ValueError(f"Dataset {data.name!r} has no test images: optimize scores every candidate on the test split.")
    return Evaluation.from_matrix(matrix)


def time_files(paths: Sequence[str | Path], runtime: str, threads: int, rounds: int, mode: str = "latency") -> list[BenchmarkResult]:
    """The files timed side by side, interleaved, each on its own runtime at the precision it records."""
    return benchmark_models([str(path) for path in paths], runtime=runtime, threads=threads, rounds=rounds, mode=mode)
