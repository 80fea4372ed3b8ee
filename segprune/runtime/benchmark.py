"""Latency measured side by side: several models timed in interleaved rounds on the same input.

Each round runs every model once, in turn, so that machine noise hits them alike and their ratios are
fair. Besides wall-clock latency, the process CPU time per image is recorded (what a busy server pays),
the achieved GMAC/s (the model's multiply-accumulates over its latency) and its share of the machine's peak at the
precision that ran (computed from the CPU by `segprune.runtime.peak`, checked by `benchmarks/cpu_peak.py`), and
energy where the machine exposes Intel RAPL counters. Every figure names the precision that executed, read back
from the runtime (OpenVINO's compiled `INFERENCE_PRECISION_HINT`): fp32 means fp32.

Keras models are exported at the fixed shape they are timed at (`static_shape=True`, the default), as a deployment
would ship them; `static_shape=False` times the dynamic-shape export instead. Deployed files (`.onnx`, OpenVINO `.xml`,
`.tflite`, int8 included) are timed as they are, on their own runtime, beside the Keras models.

A Mask R-CNN file gives two rows: its trunk alone (encoder, FPN, shared RPN head: what pruning narrows) and the
whole detector (proposals, NMS, RoIAlign, both heads and mask pasting in one exported graph,
`segprune.runtime.detector_export`; on the keras runtime, `MaskRCNN.detect`), so that a table shows what pruning
the trunk buys end to end.

Two modes: "latency" runs one request at a time; "throughput" runs OpenVINO with its THROUGHPUT hint (several
streams, a queue of asynchronous requests in flight) and reports images per second (the other runtimes have no
streams and run one request at a time in both modes).
"""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np

from segprune.backend.threads import limit_threads
from segprune.cost import flops
from segprune.inference import DEFAULT_MEASUREMENT_SIZE, fixed_input_size, measurement_size
from segprune.runtime.detector_export import DETECTOR_FORMATS, export_detector
from segprune.runtime.export import FORMATS, OpenVINORunner, companion_files, export_model, open_runner
from segprune.runtime.peak import peak_gmacs
from segprune.sizes import as_image_size, format_size

RUNTIMES = ("onnxruntime", "openvino", "litert", "keras")
PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16"), "litert": ("fp32",), "keras": ("fp32",)}
EXPORT_FORMATS = {"onnxruntime": "onnx", "openvino": "openvino", "litert": "litert"}
KERAS_SUFFIXES = (".keras", ".h5")
DEPLOYED_RUNTIMES = {".onnx": "onnxruntime", ".xml": "openvino", ".tflite": "litert"}  # a deployed file runs on its own runtime
MODES = ("latency", "throughput")
ACCEPTED = ".keras or .h5 (Keras), .onnx (ONNX Runtime), .xml with its .bin (OpenVINO IR) or .tflite (LiteRT)"
_RAPL = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
DETECTOR_RUNTIMES = {"onnxruntime": "onnx", "openvino": "openvino", "keras": None}  # where a Mask R-CNN's whole detector is timed


@dataclass(frozen=True)
class Latency:
    model: str
    median_ms: float
    p90_ms: float
    runs: int
    precision: str = "fp32"  # what executed, read back from the runtime


@dataclass(frozen=True)
class BenchmarkResult:
    """One model on one runtime: latency, throughput, compute and size."""

    model: str
    runtime: str  # the runtime this model ran on: a deployed file's own, else the one asked for Keras files
    latency_ms: float  # one call: one request, or in throughput mode every request in flight finishing
    p90_ms: float
    images_per_second: float
    cpu_ms_per_image: float
    energy_mj_per_image: float | None
    macs: int | None  # per image; None: unknown (a deployed graph whose MACs cannot be counted)
    params: int | None  # None for a deployed file (its weights are not Keras parameters)
    file_bytes: int
    zipped_bytes: int
    gmacs_per_second: float | None  # achieved: MACs of the images of one call over its median latency
    precision: str  # what executed, read back from the runtime ("fp32", "bf16", "int8 (fp32 fallback)")
    peak_gmacs: float | None  # the CPU's peak at that precision for `threads` threads (None: unknown)
    image_size: tuple[int, int]  # (height, width) timed
    batch: int
    threads: int
    static_shape: bool
    notes: tuple[str, ...] = ()  # what makes these figures differ from what was asked (e.g. thread count)
    mode: str = "latency"
    requests: int = 1  # requests in flight per call (OpenVINO throughput mode)
    part: str = "model"  # "model"; for a Mask R-CNN file "trunk" or "detector" (the whole detector)

    @property
    def peak_share(self) -> float | None:
        """Achieved GMAC/s over the peak of the precision that ran."""
        return None if not self.peak_gmacs or self.gmacs_per_second is None else self.gmacs_per_second / self.peak_gmacs

    def to_dict(self) -> dict:
        return {**asdict(self), "image_size": format_size(self.image_size), "peak_share": self.peak_share}


def onnx_latency(
    paths: list[str | Path],
    image_size: int | Sequence[int] = 256,
    batch: int = 1,
    threads: int = 2,
    rounds: int = 30,
    warmup: int = 5,
) -> list[Latency]:
    """Median and 90th-percentile latency of ONNX files on ONNX Runtime (CPU), interleaved.

    Example:
        >>> dense, pruned = onnx_latency(["dense.onnx", "pruned.onnx"])
    """
    return file_latency(paths, "onnxruntime", image_size, batch, threads, rounds, warmup)


def file_latency(
    paths: list[str | Path],
    runtime: str = "onnxruntime",
    image_size: int | Sequence[int] = 256,
    batch: int = 1,
    threads: int = 2,
    rounds: int = 30,
    warmup: int = 5,
    precision: str | None = None,
) -> list[Latency]:
    """Median and 90th-percentile latency of exported files (.onnx, .xml, .tflite) on `runtime`, interleaved.

    A file with a fixed input shape is timed at that shape; dynamic dimensions take `batch` and `image_size` (N or
    (height, width)).
    `precision` ("fp32" or "bf16", OpenVINO only) overrides the float precision OpenVINO files record (default: the
    file's, else fp32); each latency names the precision that executed.

    Example:
        >>> dense, int8 = file_latency(["dense.xml", "dense-int8.xml"], runtime="openvino")
        >>> dense.precision, int8.precision
        ('fp32', 'int8 (fp32 fallback)')
    """
    runners = [open_runner(path, threads, runtime, precision) for path in paths]
    inputs = [random_input(runner.input_shape, batch, image_size) for runner in runners]
    timings, _, _ = _interleave(runners, inputs, rounds, warmup)
    return [
        Latency(str(path), float(np.median(t)), float(np.percentile(t, 90)), len(t), runner.executed_precision)
        for path, t, runner in zip(paths, timings, runners)
    ]


def random_input(shape: tuple, batch: int, image_size: int | Sequence[int]) -> np.ndarray:
    """A uniform [0, 1) input of `shape` (B, H, W, C), dynamic dimensions filled with `batch` and `image_size` (N or (height, width))."""
    batch_size, height, width, channels = shape
    default_height, default_width = as_image_size(image_size)
    filled = (batch_size or batch, height or default_height, width or default_width, channels or 3)
    return np.random.default_rng(0).random(filled).astype(np.float32)


def benchmark_models(
    paths: list[str | Path],
    runtime: str = "onnxruntime",
    image_size: int | Sequence[int] | str | None = None,
    batch: int = 1,
    threads: int = 2,
    rounds: int = 30,
    static_shape: bool = True,
    precision: str = "fp32",
    mode: str = "latency",
) -> list[BenchmarkResult]:
    """Times model files side by side, interleaved. Keras files (.keras, .h5) run on `runtime`: exported (verified) for
    ONNX Runtime, OpenVINO or LiteRT at the fixed shape `batch` x height x width (`image_size`: N or (height, width)) unless
    `static_shape=False`. Deployed files run on their own runtime whatever `runtime` says: `.onnx` on ONNX Runtime,
    `.xml` (with its `.bin`) on OpenVINO, `.tflite` on LiteRT, at the input shape they fix (dynamic dimensions take
    `batch` and `image_size`). By default `image_size` is the size the Keras models were built for (all alike), else 256x256.

    A Mask R-CNN file gives two results: its trunk (encoder, FPN, shared RPN head), with the trunk's MACs and
    parameters, and after every other model's its whole detector (`part="detector"`): exported as one graph with
    NMS, RoIAlign, the heads and mask pasting (verified against `MaskRCNN.detect`) on ONNX Runtime and OpenVINO,
    `MaskRCNN.detect` itself on keras, not timed on LiteRT (a note says so). The detector's MACs are None: its heads
    run once per proposal and per detection, so they depend on the image; a note gives the detections it found.

    `precision` is "fp32", or "bf16" on OpenVINO (its INFERENCE_PRECISION_HINT; the CPU needs AVX512_BF16 or AMX);
    a deployed `.xml` runs at the precision it records unless bf16 is asked. Each result names its runtime, the
    precision that executed and its achieved GMAC/s as a share of the CPU's peak at it. A Keras model's MACs are
    counted from it, a deployed ONNX or OpenVINO graph's from its convolutions and matrix products at the shape
    timed; MACs that cannot be counted are None, never a guess.

    `mode="throughput"` compiles OpenVINO models with the THROUGHPUT hint and keeps its optimal number of
    asynchronous requests in flight per call; images per second then count every request.

    Example:
        >>> for row in benchmark_models(["runs/unet.keras", "runs/unet-pruned.xml", "runs/unet-int8.onnx"]):
        ...     print(row.model, row.runtime, row.precision, row.latency_ms)
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; choose one of {list(RUNTIMES)}.")
    if precision not in PRECISIONS[runtime]:
        raise ValueError(f"{runtime} runs models at {list(PRECISIONS[runtime])} here; got precision {precision!r}. bf16 runs on openvino.")
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {list(MODES)}.")
    for path in paths:
        check_model_file(path)
    keras_paths = [path for path in paths if Path(path).suffix in KERAS_SUFFIXES]
    notes = tuple(note for note in [limit_keras_threads(threads)] if runtime == "keras" and keras_paths and note)
    loaded = {str(path): _timed_network(path, runtime) for path in keras_paths}
    image_size = _shared_size([model for model, _, _ in loaded.values()], keras_paths, image_size)
    with tempfile.TemporaryDirectory(prefix="segprune-bench-") as folder:
        entries, timed_paths = [], []
        for index, path in enumerate(paths):
            if str(path) in loaded:
                model, model_notes, detector = loaded[str(path)]
                entry = _keras_entry(model, model_notes, runtime, Path(folder) / f"model{index}", (batch, image_size), threads, static_shape, precision)
                entries.append(entry if detector is None else replace(entry, part="trunk"))
            else:
                entries.append(_deployed_entry(path, (batch, image_size), threads, precision))
            timed_paths.append(path)
        for index, path in enumerate(paths):
            detector = loaded.get(str(path), (None, None, None))[2]
            if detector is not None and runtime in DETECTOR_RUNTIMES:
                entries.append(_detector_entry(detector, path, runtime, Path(folder) / f"detector{index}", (batch, image_size), threads, precision))
                timed_paths.append(path)
        runners = [_in_mode(entry.runner, mode, threads) for entry in entries]
        timings, cpu_seconds, energy = _interleave(runners, [entry.input for entry in entries], rounds, warmup=5)
    results = []
    for path, entry, runner, times, cpu, joules in zip(timed_paths, entries, runners, timings, cpu_seconds, energy):
        median = float(np.median(times))
        call_images = entry.input.shape[0] * runner.requests
        images = rounds * call_images
        results.append(
            BenchmarkResult(
                model=str(path),
                runtime=entry.runtime,
                latency_ms=median,
                p90_ms=float(np.percentile(times, 90)),
                images_per_second=1000.0 * call_images / median,
                cpu_ms_per_image=1000.0 * cpu / images,
                energy_mj_per_image=None if joules is None else 1000.0 * joules / images,
                macs=entry.macs,
                params=entry.params,
                file_bytes=sum(part.stat().st_size for part in companion_files(Path(path))),
                zipped_bytes=zipped_size(Path(path)),
                gmacs_per_second=None if entry.macs is None else achieved_gmacs(entry.macs * call_images, median),
                precision=runner.executed_precision,
                peak_gmacs=peak_gmacs(runner.executed_precision, threads),
                image_size=(int(entry.input.shape[1]), int(entry.input.shape[2])),
                batch=int(entry.input.shape[0]),
                threads=threads,
                static_shape=entry.static_shape,
                notes=(notes if entry.runtime == "keras" else ()) + entry.notes + _mode_note(mode, entry.runtime, runner)
                + _precision_note(precision, runner.executed_precision),
                mode=mode,
                requests=runner.requests,
                part=entry.part,
            )
        )
    return results


def check_model_file(path: str | Path) -> None:
    """Refuses, in one line naming the file and what is accepted, a file that is missing or of an unknown kind."""
    path = Path(path)
    if path.suffix not in KERAS_SUFFIXES and path.suffix not in DEPLOYED_RUNTIMES:
        raise ValueError(f"Cannot benchmark {str(path)!r}: its kind ({path.suffix or 'no suffix'}) is not one timed here; expected {ACCEPTED}.")
    missing = [str(part) for part in companion_files(path) if not part.is_file()]
    if missing:
        raise ValueError(f"Cannot benchmark {str(path)!r}: {', '.join(missing)} not found; expected {ACCEPTED}.")


@dataclass(frozen=True)
class _Entry:
    """One model ready to time: its runner and input, on which runtime, and what it costs."""

    runner: object
    input: np.ndarray
    runtime: str
    macs: int | None
    params: int | None
    static_shape: bool
    notes: tuple[str, ...] = ()
    part: str = "model"


def _keras_entry(model, notes, runtime: str, stem: Path, size: tuple[int, tuple[int, int]], threads: int, static_shape: bool, precision: str) -> _Entry:
    batch, image_size = size
    x = random_input((batch, *image_size, int(model.inputs[0].shape[-1])), batch, image_size)
    if runtime == "keras":
        runner = _KerasRunner(model)
    else:
        fmt = EXPORT_FORMATS[runtime]
        exported = stem.with_suffix(FORMATS[fmt])
        export_model(model, exported, format=fmt, input_shape=x.shape if static_shape else None)
        runner = open_runner(exported, threads, runtime, precision)
    macs = flops(model, image_size).macs
    return _Entry(runner, x, runtime, macs, model.count_params(), static_shape and runtime != "keras", notes)


def _detector_entry(detector, path: str | Path, runtime: str, stem: Path, size: tuple[int, tuple[int, int]], threads: int, precision: str) -> _Entry:
    """The whole Mask R-CNN on `runtime`: its exported graph (verified against `MaskRCNN.detect`), or `detect` on keras."""
    batch, image_size = size
    x = random_input((batch, *image_size, detector.config.input_channels), batch, image_size)
    if runtime == "keras":
        runner = _KerasDetectRunner(detector)
        found = sum(len(d) for d in detector.detect(x))
        shape_note = "MaskRCNN.detect (trunk and heads in Keras, the steps between in Python and NumPy)"
    else:
        format = DETECTOR_RUNTIMES[runtime]
        exported = stem.with_suffix(DETECTOR_FORMATS[format])
        agreement = export_detector(detector, exported, format, input_shape=x.shape)
        runner = open_runner(exported, threads, runtime, precision)
        found = agreement.detections
        shape_note = f"one exported graph at {format_size(image_size)} (proposals, NMS, RoIAlign, both heads, mask pasting), verified: {agreement}"
    note = (
        f"{Path(path).name} whole detector: {shape_note}; it found {found} object(s) on the random input timed, and its heads run "
        "once per proposal and per detection, so its time depends on the image and its MACs are not counted"
    )
    return _Entry(runner, x, runtime, None, detector.count_params(), runtime != "keras", (note,), "detector")


def _deployed_entry(path: str | Path, size: tuple[int, tuple[int, int]], threads: int, precision: str) -> _Entry:
    batch, image_size = size
    runtime = DEPLOYED_RUNTIMES[Path(path).suffix]
    try:
        runner = open_runner(path, threads, runtime, precision if runtime == "openvino" and precision != "fp32" else None)
    except Exception as error:  # any runtime's refusal to read a file becomes one line naming it
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"Cannot read {str(path)!r} with {runtime}: {first_line}; expected {ACCEPTED}.") from error
    x = random_input(runner.input_shape, batch, image_size)
    macs = graph_macs(path, x.shape)
    return _Entry(runner, x, runtime, None if macs is None else macs // x.shape[0], None, None not in runner.input_shape)


def graph_macs(path: str | Path, shape: tuple[int, ...]) -> int | None:
    """Multiply-accumulates of a deployed ONNX or OpenVINO graph run on one input of `shape` (its convolutions and
    matrix products, as `segprune.cost.flops` counts a Keras model), or None where they cannot be counted.

    Example:
        >>> graph_macs("runs/unet-int8.onnx", (1, 256, 256, 1))
    """
    suffix = Path(path).suffix
    try:
        if suffix == ".onnx":
            return _onnx_macs(path, shape)
        if suffix == ".xml":
            return _openvino_macs(path, shape)
    except Exception:  # a graph we cannot read shapes from has unknown MACs, never a guessed figure
        return None
    return None


_ONNX_UNCOUNTED = {"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "Einsum"}


def _onnx_macs(path: str | Path, shape: tuple[int, ...]) -> int | None:
    import onnx

    model = onnx.load(str(path))
    for dimension, size in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):
        dimension.dim_value = int(size)
    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    total = 0
    for node in graph.node:
        if node.op_type in _ONNX_UNCOUNTED:
            return None
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        first, weight, output = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0])
        needed = (weight, first) if node.op_type == "ConvTranspose" else (weight, output) if node.op_type == "Conv" else (first, output)
        if any(known is None for known in needed):
            return None
        if node.op_type == "Conv":
            total += int(np.prod(output)) * int(np.prod(weight[1:]))
        elif node.op_type == "ConvTranspose":  # each input pixel scattered once, as segprune.cost counts Conv2DTranspose
            total += int(np.prod(first)) * int(np.prod(weight[1:]))
        elif node.op_type == "MatMul":
            total += int(np.prod(output)) * first[-1]
        else:
            transposed = any(attribute.name == "transA" and attribute.i for attribute in node.attribute)
            total += int(np.prod(output)) * first[0 if transposed else 1]
    return total


_OPENVINO_COUNTED = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData", "MatMul"}
_OPENVINO_UNCOUNTED = {"Einsum"}


def _openvino_macs(path: str | Path, shape: tuple[int, ...]) -> int | None:
    import openvino

    model = openvino.Core().read_model(str(path))
    if not model.inputs[0].get_partial_shape().is_static:
        model.reshape(list(shape))
    total = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in _OPENVINO_UNCOUNTED:
            return None
        if kind not in _OPENVINO_COUNTED:
            continue
        first, weight = (tuple(op.input(index).get_shape()) for index in (0, 1))
        output = int(np.prod(tuple(op.output(0).get_shape())))
        if kind == "Convolution":
            total += output * int(np.prod(weight[1:]))
        elif kind == "GroupConvolution":
            total += output * int(np.prod(weight[2:]))
        elif kind == "ConvolutionBackpropData":
            total += int(np.prod(first)) * int(np.prod(weight[1:]))
        elif kind == "GroupConvolutionBackpropData":
            total += int(np.prod(first)) * int(np.prod(weight[2:]))
        else:
            transposed = op.get_attributes().get("transpose_a", False)
            total += output * first[-2 if transposed else -1]
    return total


def _in_mode(runner, mode: str, threads: int):
    """The runner as the mode runs it: an OpenVINO model in throughput mode keeps several requests in flight."""
    if mode == "throughput" and isinstance(runner, OpenVINORunner):
        return _OpenVINOThroughput(runner, threads)
    runner.requests = 1
    return runner


def _mode_note(mode: str, runtime: str, runner) -> tuple[str, ...]:
    if mode != "throughput":
        return ()
    if isinstance(runner, _OpenVINOThroughput):
        return (
            f"openvino throughput mode: {runner.streams} stream(s), {runner.requests} requests in flight per call; "
            "latency is the time for all of them to finish, images/s counts every one",
        )
    return (f"{runtime} has no throughput mode (no streams): it runs one request at a time, as in latency mode",)


class _OpenVINOThroughput:
    """An OpenVINO model compiled with the THROUGHPUT hint at the same threads and precision, run as an
    asynchronous queue of its optimal number of requests; one call runs `requests` batches at once."""

    def __init__(self, runner: OpenVINORunner, threads: int) -> None:
        import openvino

        hint = runner.compiled.get_property("INFERENCE_PRECISION_HINT")
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": hint}
        runner.compiled = openvino.Core().compile_model(runner.model, "CPU", config)
        self.runner = runner
        self.requests = int(runner.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.streams = int(runner.compiled.get_property("NUM_STREAMS"))
        self.queue = openvino.AsyncInferQueue(runner.compiled, self.requests)

    @property
    def executed_precision(self) -> str:
        return self.runner.executed_precision

    def __call__(self, batch: np.ndarray) -> None:
        for _ in range(self.requests):
            self.queue.start_async({0: batch})
        self.queue.wait_all()


def _precision_note(asked: str, executed: str) -> tuple[str, ...]:
    if executed.split()[0] in (asked, "int8"):  # an int8 file runs int8 whatever float precision is asked
        return ()
    return (f"{asked} was asked and {executed} ran: the CPU lacks {asked} instructions (AVX512_BF16 or AMX for bf16)",)


def _shared_size(models, paths, image_size: int | Sequence[int] | str | None) -> tuple[int, int]:
    """The one (height, width) every model is timed at: `image_size`, else the size those built for one were built for."""
    if image_size is None:
        sizes = {path: fixed_input_size(model) for path, model in zip(paths, models)}
        built_for = {path: size for path, size in sizes.items() if size is not None}
        if len(set(built_for.values())) > 1:
            listed = ", ".join(f"{Path(path).name} {format_size(size)}" for path, size in built_for.items())
            raise ValueError(
                f"The models are built for different input sizes ({listed}); models timed side by side share one size. "
                "Benchmark each size in its own run."
            )
        image_size = next(iter(built_for.values()), DEFAULT_MEASUREMENT_SIZE)
    image_size = as_image_size(image_size)
    for model in models:
        measurement_size(model, image_size)  # refuses two inputs, channels-first, or a model built for another size
    return image_size


def _timed_network(path: str | Path, runtime: str) -> tuple[keras.Model, tuple[str, ...], object]:
    """The network a file is timed by, what a reader of its figures must know, and the whole detector of a Mask R-CNN
    (else None)."""
    from segprune.models import load_model
    from segprune.models.mask_rcnn import is_mask_rcnn_file, load_mask_rcnn

    if not is_mask_rcnn_file(path):
        return load_model(path), (), None
    detector = load_mask_rcnn(path)
    whole = (
        "the whole detector (proposals, NMS, RoIAlign, the box and mask heads, mask pasting) is timed in its own row"
        if runtime in DETECTOR_RUNTIMES
        else f"the whole detector is not exported to {runtime} (its NMS, RoIAlign, heads and mask pasting are timed on onnxruntime, openvino or keras)"
    )
    note = f"{Path(path).name} is a Mask R-CNN: its trunk (encoder, FPN, shared RPN head) alone is timed, with the trunk's MACs and parameters; {whole}"
    return detector.trunk, (note,), detector


def achieved_gmacs(macs: int, latency_ms: float) -> float:
    """Multiply-accumulates per second, in billions, that running `macs` in `latency_ms` achieves."""
    return macs / (latency_ms / 1000.0) / 1e9


def zipped_size(path: Path) -> int:
    """Bytes of the file after DEFLATE compression (what sparse, zero-filled weights save on disk); an OpenVINO
    `.xml` is zipped with its `.bin`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for part in companion_files(Path(path)):
            archive.write(part, arcname=part.name)
    return buffer.tell()


def limit_keras_threads(threads: int) -> str | None:
    """Caps the Keras backend's intra-op threads; must run before the backend executes anything.

    Returns:
        None when the threads were set, else a note saying why not and how many threads the backend runs
        with instead, for the benchmark to report next to its figures.
    """
    return limit_threads(threads)


class _KerasRunner:
    """Runs a Keras model on a batch; its precision is the model's compute dtype."""

    _NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float64": "fp64"}

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.executed_precision = self._NAMES.get(model.dtype_policy.compute_dtype, model.dtype_policy.compute_dtype)

    def __call__(self, batch: np.ndarray):
        return keras.tree.map_structure(np.asarray, self.model.predict_on_batch(batch))  # one output or several (a Mask R-CNN trunk)


class _KerasDetectRunner:
    """Runs `MaskRCNN.detect` on a batch: what a Keras user of the detector runs."""

    executed_precision = "fp32"

    def __init__(self, detector) -> None:
        self.detector = detector

    def __call__(self, batch: np.ndarray):
        return self.detector.detect(batch)


def interleaved_timings(runners, inputs, rounds: int = 30, warmup: int = 5) -> list[list[float]]:
    """Wall times (ms) of each runner on its input, all runners timed once per round, in turn, each timed call
    after an untimed one of the same runner (so each finds its own caches, as it would deployed alone).

    Runners may be of different runtimes (an ONNX Runtime session next to an OpenVINO model), so that one
    run compares them under the same machine noise.

    Example:
        >>> ort_times, openvino_times = interleaved_timings([open_runner("m.onnx"), open_runner("m.xml")], [x, x])
    """
    return _interleave(runners, inputs, rounds, warmup)[0]


def _interleave(runners, inputs, rounds: int, warmup: int):
    """Runs every runner in turn once per round; returns per-runner wall times (ms), CPU seconds, energy (J or None).

    With several runners each timed call follows an untimed call of the same runner: a deployed model runs alone,
    on caches that hold its own weights and activations, while here the model before it in the round has just
    evicted them. Timed on its first call after the others, the demo's int8 U-Net at half the MACs (OpenVINO, beside
    the dense OpenVINO fp32 and ONNX Runtime fp32 files) measured 5-13% slower than on its second call, so its
    speed-up over dense came out 9-12% low (3 runs of 30 rounds each way); a large model moves by 1-2%."""
    for _ in range(warmup):
        for runner, x in zip(runners, inputs):
            runner(x)
    timings = [[] for _ in runners]
    cpu = [0.0 for _ in runners]
    energy: list[float | None] = [0.0 if _rapl_readable() else None for _ in runners]
    for _ in range(rounds):
        for index, (runner, x) in enumerate(zip(runners, inputs)):
            if len(runners) > 1:
                runner(x)  # its own caches back, untimed
            energy_before = _read_rapl()
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            runner(x)
            timings[index].append(1000.0 * (time.perf_counter() - wall_before))
            cpu[index] += time.process_time() - cpu_before
            energy_after = _read_rapl()
            if energy[index] is not None and energy_before is not None and energy_after is not None:
                energy[index] += max(0, energy_after - energy_before) / 1e6
    return timings, cpu, energy


def _rapl_readable() -> bool:
    return _read_rapl() is not None


def _read_rapl() -> int | None:
    try:
        return int(_RAPL.read_text())
    except (OSError, ValueError):
        return None
