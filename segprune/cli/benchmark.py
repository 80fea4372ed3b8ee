"""`segprune benchmark`: time models side by side (interleaved): Keras files on a deployment runtime, deployed files
(.onnx, OpenVINO .xml, .tflite, int8 included) on their own."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from segprune.cli import _console
from segprune.cli._choices import BENCHMARK_MODES, BENCHMARK_PRECISIONS, BENCHMARK_RUNTIMES
from segprune.cli._common import IMAGE_SIZE_METAVAR, image_size_argument

DESCRIPTION = "Latency, throughput, achieved GMAC/s and its share of the CPU's peak, CPU time, MACs and size, interleaved."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models", nargs="+", metavar="MODEL",
        help=".keras or .h5 model files (run on --runtime), and deployed files, each run on its own runtime whatever --runtime says: "
        ".onnx on ONNX Runtime, .xml (with its .bin) on OpenVINO, .tflite on LiteRT; int8 files included. A Mask R-CNN file gives "
        "two rows: its trunk, and the whole detector (NMS, RoIAlign, heads and mask pasting exported in one graph)",
    )
    parser.add_argument("--runtime", default="onnxruntime", choices=BENCHMARK_RUNTIMES, help="the runtime Keras files are exported to and run on")
    parser.add_argument(
        "--precision", default="fp32", choices=BENCHMARK_PRECISIONS,
        help="fp32 (default; OpenVINO is told f32, not left to its bf16 default) or bf16 (openvino, CPUs with AVX512_BF16 or AMX); "
        "a deployed .xml runs at the precision it records unless bf16 is asked, an int8 file runs int8",
    )
    parser.add_argument(
        "--image-size", type=image_size_argument, default=None, metavar=IMAGE_SIZE_METAVAR,
        help="N or HxW (height x width, e.g. 256x512); default: the size the Keras models were built for, else 256; a deployed file "
        "with a fixed input shape runs at that shape",
    )
    parser.add_argument("--batch", type=int, default=1, help="images per request (default 1; a deployed file's fixed batch wins)")
    parser.add_argument(
        "--mode", default="latency", choices=BENCHMARK_MODES,
        help="latency (default): one request at a time; throughput: OpenVINO's THROUGHPUT hint, several streams and an async "
        "queue of requests in flight, reported as images/s (other runtimes have no streams and run as in latency mode)",
    )
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds after 5 warm-up rounds (default 30)")
    parser.add_argument(
        "--dynamic-shape", action="store_true", help="time Keras files' dynamic-shape export (default: exported at the fixed shape timed)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per model per line")


def run(arguments: argparse.Namespace) -> int:
    from segprune.runtime.benchmark import benchmark_models

    results = benchmark_models(
        arguments.models, arguments.runtime, arguments.image_size, arguments.batch, arguments.threads, arguments.rounds,
        static_shape=not arguments.dynamic_shape, precision=arguments.precision, mode=arguments.mode,
    )
    if arguments.json:
        for result in results:
            print(json.dumps(result.to_dict()), flush=True)
        return 0
    references = {}  # speed-ups compare like with like: trunks with the first trunk, whole detectors with the first detector
    for r in results:
        references.setdefault(_compared_as(r), r.images_per_second)
    shapes = {(r.batch, r.image_size) for r in results}
    rows = [
        [_row_name(r), r.runtime, r.precision, *([_shape(r)] if len(shapes) > 1 else []),
         f"{r.latency_ms:.2f}", f"{r.p90_ms:.2f}", f"{r.images_per_second / references[_compared_as(r)]:.2f}x", f"{r.images_per_second:.1f}",
         _unknown(r.gmacs_per_second, "{:.1f}"), _unknown(r.peak_share, "{:.1%}"), f"{r.cpu_ms_per_image:.1f}",
         _unknown(None if r.macs is None else r.macs / 1e6, "{:.0f}M"), _unknown(r.params, "{:,}"), f"{r.zipped_bytes / 1024:.0f} KiB"]
        for r in results
    ]
    export = "dynamic-shape export" if arguments.dynamic_shape else "fixed-shape export"
    timed_at = "" if len(shapes) > 1 else f"{_shape(results[0])}, "
    title = (
        f"{timed_at}Keras files on {arguments.runtime} ({export}), deployed files on their own runtime at the shape they fix; "
        f"{arguments.mode} mode, {arguments.threads} threads, interleaved"
    )
    latency = "ms per call" if arguments.mode == "throughput" else "median ms"
    columns = ["model", "runtime", "ran in", *(["input"] if len(shapes) > 1 else []), latency, "p90 ms", "speed-up", "images/s",
               "GMAC/s", "of peak", "CPU ms/image", "MACs", "params", "zipped"]
    _console.output_console.print(_console.table(title, columns, rows))
    _console.output_console.print(_peak_line(results, arguments.threads))
    if any(r.macs is None for r in results):
        _console.output_console.print(
            "MACs '-': not counted (a .tflite graph, an ONNX/OpenVINO graph whose shapes are not all known, or a whole Mask R-CNN, "
            "whose heads run once per proposal and detection)"
        )
    if any(r.part == "detector" for r in results):
        _console.output_console.print("speed-up: a whole detector's against the first whole detector, every other row's against the first row")
    for note in dict.fromkeys(note for result in results for note in result.notes):
        _console.output_console.print(f"note: {note}")
    return 0


def _row_name(result) -> str:
    """The file's name, and for a Mask R-CNN which part of it ran: its trunk or the whole detector."""
    names = {"trunk": " (trunk)", "detector": " (whole detector)"}
    return Path(result.model).name + names.get(result.part, "")


def _compared_as(result) -> str:
    return "detector" if result.part == "detector" else "network"


def _shape(result) -> str:
    return f"{result.batch}x{result.image_size[0]}x{result.image_size[1]}"


def _unknown(value, form: str) -> str:
    return "-" if value is None else form.format(value)


def _peak_line(results, threads: int) -> str:
    """What 'of peak' divides by: the CPU's peak at each precision that ran, and what it was computed from."""
    from segprune.runtime.peak import detect_cpu

    peaks = {result.precision.split()[0]: result.peak_gmacs for result in results}
    known = ", ".join(f"{precision} {peak:.0f} GMAC/s" for precision, peak in peaks.items() if peak)
    if not known:
        return "peak: unknown on this machine (no /proc/cpuinfo or no clock)"
    return f"peak for {threads} thread(s): {known}; from {detect_cpu().describe()} (segprune.runtime.peak)"
