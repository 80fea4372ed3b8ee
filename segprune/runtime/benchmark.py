"""Latency measured side by side: several models timed in interleaved rounds on the same input.

Each round runs every model once, in turn, so that machine noise hits them alike and their ratios are
fair. Besides wall-clock latency, the process CPU time per image is recorded (what a busy server pays),
the achieved GMAC/s (the model's multiply-accumulates over its latency) and its share of the machine's peak at the
precision that ran (computed from the CPU by `segprune.runtime.peak`, checked by `benchmarks/cpu_peak.py`), and
energy where the machine exposes Intel RAPL counters. Every figure names the precision that executed, read back
from the runtime (OpenVINO's compiled `INFERENCE_PRECISION_HINT`): fp32 means fp32.

Models are exported at the fixed shape they are timed at (`static_shape=True`, the default), as a deployment
would ship them; `static_shape=False` times the dynamic-shape export instead.
"""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from segprune.backend.threads import limit_threads
from segprune.cost import flops
from segprune.inference import fixed_input_size, measurement_size
from segprune.runtime.export import FORMATS, export_model, open_runner
from segprune.runtime.peak import peak_gmacs

RUNTIMES = ("onnxruntime", "openvino", "litert", "keras")
PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16"), "litert": ("fp32",), "keras": ("fp32",)}
EXPORT_FORMATS = {"onnxruntime": "onnx", "openvino": "openvino", "litert": "litert"}
_RAPL = Path("/sys/class/powercap/intel-rapl:0/energy_uj")


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
    runtime: str
    latency_ms: float
    p90_ms: float
    images_per_second: float
    cpu_ms_per_image: float
    energy_mj_per_image: float | None
    macs: int
    params: int
    file_bytes: int
    zipped_bytes: int
    gmacs_per_second: float  # achieved: MACs of one batch over its median latency
    precision: str  # what executed, read back from the runtime ("fp32", "bf16", "int8 (fp32 fallback)")
    peak_gmacs: float | None  # the CPU's peak at that precision for `threads` threads (None: unknown)
    image_size: int
    batch: int
    threads: int
    static_shape: bool
    notes: tuple[str, ...] = ()  # what makes these figures differ from what was asked (e.g. thread count)

    @property
    def peak_share(self) -> float | None:
        """Achieved GMAC/s over the peak of the precision that ran."""
        return None if not self.peak_gmacs else self.gmacs_per_second / self.peak_gmacs

    def to_dict(self) -> dict:
        return {**asdict(self), "peak_share": self.peak_share}


def onnx_latency(
    paths: list[str | Path],
    image_size: int = 256,
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
    image_size: int = 256,
    batch: int = 1,
    threads: int = 2,
    rounds: int = 30,
    warmup: int = 5,
    precision: str | None = None,
) -> list[Latency]:
    """Median and 90th-percentile latency of exported files (.onnx, .xml, .tflite) on `runtime`, interleaved.

    A file with a fixed input shape is timed at that shape; dynamic dimensions take `batch` and `image_size`.
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


def random_input(shape: tuple, batch: int, image_size: int) -> np.ndarray:
    """A uniform [0, 1) input of `shape` (B, H, W, C), dynamic dimensions filled with `batch` and `image_size`."""
    batch_size, height, width, channels = shape
    filled = (batch_size or batch, height or image_size, width or image_size, channels or 3)
    return np.random.default_rng(0).random(filled).astype(np.float32)


def benchmark_models(
    paths: list[str | Path],
    runtime: str = "onnxruntime",
    image_size: int | None = None,
    batch: int = 1,
    threads: int = 2,
    rounds: int = 30,
    static_shape: bool = True,
    precision: str = "fp32",
) -> list[BenchmarkResult]:
    """Times Keras model files on a runtime, interleaved; exports them (verified) for ONNX Runtime, OpenVINO
    or LiteRT, at the fixed shape `batch` x `image_size` x `image_size` unless `static_shape=False`. By default
    `image_size` is the size the models were built for (all alike), else 256.

    A Mask R-CNN file is timed by its trunk (encoder, FPN, shared RPN head: the part that exports), and its
    MACs and parameters are the trunk's; the result's notes name what runs in Python and is not timed.

    `precision` is "fp32", or "bf16" on OpenVINO (its INFERENCE_PRECISION_HINT; the CPU needs AVX512_BF16 or AMX).
    Each result names the precision that executed and its achieved GMAC/s as a share of the CPU's peak at it.

    Example:
        >>> for row in benchmark_models(["runs/unet.keras", "runs/unet-pruned.keras"]):
        ...     print(row.model, row.latency_ms)
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; choose one of {list(RUNTIMES)}.")
    if precision not in PRECISIONS[runtime]:
        raise ValueError(f"{runtime} runs models at {list(PRECISIONS[runtime])} here; got precision {precision!r}. bf16 runs on openvino.")
    notes = tuple(note for note in [limit_keras_threads(threads)] if runtime == "keras" and note)
    models, model_notes = zip(*(_timed_network(path) for path in paths)) if paths else ((), ())
    image_size = _shared_size(models, paths, image_size)
    inputs = [random_input((batch, image_size, image_size, int(model.inputs[0].shape[-1])), batch, image_size) for model in models]
    with tempfile.TemporaryDirectory(prefix="segprune-bench-") as folder:
        runners = []
        for index, (model, x) in enumerate(zip(models, inputs)):
            if runtime == "keras":
                runners.append(_KerasRunner(model))
            else:
                fmt = EXPORT_FORMATS[runtime]
                exported = Path(folder) / f"model{index}{FORMATS[fmt]}"
                export_model(model, exported, format=fmt, input_shape=x.shape if static_shape else None)
                runners.append(open_runner(exported, threads, runtime, precision))
        timings, cpu_seconds, energy = _interleave(runners, inputs, rounds, warmup=5)
    results = []
    for path, model, times, cpu, joules, own_notes, runner in zip(paths, models, timings, cpu_seconds, energy, model_notes, runners):
        median = float(np.median(times))
        images = rounds * batch
        macs = flops(model, (image_size, image_size)).macs
        results.append(
            BenchmarkResult(
                model=str(path),
                runtime=runtime,
                latency_ms=median,
                p90_ms=float(np.percentile(times, 90)),
                images_per_second=1000.0 * batch / median,
                cpu_ms_per_image=1000.0 * cpu / images,
                energy_mj_per_image=None if joules is None else 1000.0 * joules / images,
                macs=macs,
                params=model.count_params(),
                file_bytes=Path(path).stat().st_size,
                zipped_bytes=zipped_size(Path(path)),
                gmacs_per_second=achieved_gmacs(macs * batch, median),
                precision=runner.executed_precision,
                peak_gmacs=peak_gmacs(runner.executed_precision, threads),
                image_size=image_size,
                batch=batch,
                threads=threads,
                static_shape=static_shape and runtime != "keras",
                notes=notes + own_notes + _precision_note(precision, runner.executed_precision),
            )
        )
    return results


def _precision_note(asked: str, executed: str) -> tuple[str, ...]:
    if executed.split()[0] == asked:
        return ()
    return (f"{asked} was asked and {executed} ran: the CPU lacks {asked} instructions (AVX512_BF16 or AMX for bf16)",)


def _shared_size(models, paths, image_size: int | None) -> int:
    """The one size every model is timed at: `image_size`, else the size those built for one were built for."""
    if image_size is None:
        sizes = {path: fixed_input_size(model) for path, model in zip(paths, models)}
        built_for = {path: size for path, size in sizes.items() if size is not None}
        if len(set(built_for.values())) > 1:
            listed = ", ".join(f"{Path(path).name} {size[0]}x{size[1]}" for path, size in built_for.items())
            raise ValueError(
                f"The models are built for different input sizes ({listed}); models timed side by side share one size. "
                "Benchmark each size in its own run."
            )
        image_size = next(iter(built_for.values()), (256, 256))[0]
    for model in models:
        measurement_size(model, image_size)  # refuses two inputs, channels-first, or a model built for another size
    return image_size


def _timed_network(path: str | Path) -> tuple[keras.Model, tuple[str, ...]]:
    """The network a file is timed by, and what a reader of its figures must know: a Mask R-CNN's trunk."""
    from segprune.models import load_model
    from segprune.models.mask_rcnn import is_mask_rcnn_file, load_mask_rcnn

    if not is_mask_rcnn_file(path):
        return load_model(path), ()
    note = (
        f"{Path(path).name} is a Mask R-CNN: its trunk (encoder, FPN, shared RPN head) is timed and its MACs and parameters are "
        "the trunk's; proposal decoding, NMS, RoIAlign, the box and mask heads and mask pasting run in Python (MaskRCNN.detect), untimed"
    )
    return load_mask_rcnn(path).trunk, (note,)


def achieved_gmacs(macs: int, latency_ms: float) -> float:
    """Multiply-accumulates per second, in billions, that running `macs` in `latency_ms` achieves."""
    return macs / (latency_ms / 1000.0) / 1e9


def zipped_size(path: Path) -> int:
    """Bytes of the file after DEFLATE compression (what sparse, zero-filled weights save on disk)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, arcname=path.name)
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


def interleaved_timings(runners, inputs, rounds: int = 30, warmup: int = 5) -> list[list[float]]:
    """Wall times (ms) of each runner on its input, all runners run once per round, in turn.

    Runners may be of different runtimes (an ONNX Runtime session next to an OpenVINO model), so that one
    run compares them under the same machine noise.

    Example:
        >>> ort_times, openvino_times = interleaved_timings([open_runner("m.onnx"), open_runner("m.xml")], [x, x])
    """
    return _interleave(runners, inputs, rounds, warmup)[0]


def _interleave(runners, inputs, rounds: int, warmup: int):
    """Runs every runner once per round; returns per-runner wall times (ms), CPU seconds, energy (J or None)."""
    for _ in range(warmup):
        for runner, x in zip(runners, inputs):
            runner(x)
    timings = [[] for _ in runners]
    cpu = [0.0 for _ in runners]
    energy: list[float | None] = [0.0 if _rapl_readable() else None for _ in runners]
    for _ in range(rounds):
        for index, (runner, x) in enumerate(zip(runners, inputs)):
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
