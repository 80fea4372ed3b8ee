"""`segprune benchmark`: time models side by side (interleaved) on a deployment runtime."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from segprune.cli import _console
from segprune.cli._choices import BENCHMARK_PRECISIONS, BENCHMARK_RUNTIMES

DESCRIPTION = "Latency, throughput, achieved GMAC/s and its share of the CPU's peak, CPU time, MACs and size, interleaved."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".keras or .h5 model files")
    parser.add_argument("--runtime", default="onnxruntime", choices=BENCHMARK_RUNTIMES)
    parser.add_argument(
        "--precision", default="fp32", choices=BENCHMARK_PRECISIONS,
        help="fp32 (default; OpenVINO is told f32, not left to its bf16 default) or bf16 (openvino, CPUs with AVX512_BF16 or AMX)",
    )
    parser.add_argument("--image-size", type=int, default=None, help="default: the size the models were built for, else 256")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds after 5 warm-up rounds (default 30)")
    parser.add_argument(
        "--dynamic-shape", action="store_true", help="time the dynamic-shape export (default: exported at the fixed shape timed)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per model per line")


def run(arguments: argparse.Namespace) -> int:
    from segprune.runtime.benchmark import benchmark_models

    results = benchmark_models(
        arguments.models, arguments.runtime, arguments.image_size, arguments.batch, arguments.threads, arguments.rounds,
        static_shape=not arguments.dynamic_shape, precision=arguments.precision,
    )
    if arguments.json:
        for result in results:
            print(json.dumps(result.to_dict()), flush=True)
        return 0
    reference = results[0].latency_ms
    rows = [
        [Path(r.model).name, r.precision, f"{r.latency_ms:.2f}", f"{r.p90_ms:.2f}", f"{reference / r.latency_ms:.2f}x", f"{r.images_per_second:.1f}",
         f"{r.gmacs_per_second:.1f}", "-" if r.peak_share is None else f"{100 * r.peak_share:.1f}%",
         f"{r.cpu_ms_per_image:.1f}", f"{r.macs / 1e6:.0f}M", f"{r.params:,}", f"{r.zipped_bytes / 1024:.0f} KiB"]
        for r in results
    ]
    size = f"{arguments.batch}x{results[0].image_size}x{results[0].image_size}"
    shape = "dynamic-shape export" if arguments.dynamic_shape else "fixed-shape export"
    title = f"{arguments.runtime}, {size}, {shape}, {arguments.threads} threads, interleaved"
    columns = ["model", "ran in", "median ms", "p90 ms", "speed-up", "images/s", "GMAC/s", "of peak", "CPU ms/image", "MACs", "params", "zipped"]
    _console.output_console.print(_console.table(title, columns, rows))
    _console.output_console.print(_peak_line(results, arguments.threads))
    for note in dict.fromkeys(note for result in results for note in result.notes):
        _console.output_console.print(f"note: {note}")
    return 0


def _peak_line(results, threads: int) -> str:
    """What 'of peak' divides by: the CPU's peak at each precision that ran, and what it was computed from."""
    from segprune.runtime.peak import detect_cpu

    peaks = {result.precision.split()[0]: result.peak_gmacs for result in results}
    known = ", ".join(f"{precision} {peak:.0f} GMAC/s" for precision, peak in peaks.items() if peak)
    if not known:
        return "peak: unknown on this machine (no /proc/cpuinfo or no clock)"
    return f"peak for {threads} thread(s): {known}; from {detect_cpu().describe()} (segprune.runtime.peak)"
