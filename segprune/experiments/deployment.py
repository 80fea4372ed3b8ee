"""A sweep's networks deployed: exported at a fixed shape per runtime, optionally quantized to int8, timed.

All files of one runtime are timed together in interleaved rounds, so the ratios between them are fair.
Every deployment is recorded on its row as `{runtime, precision, executed_precision, latency_ms, dice,
mask_agreement, gmacs_per_second, peak_share, ...}` with two speed-ups: over the dense fp32 model on ONNX
Runtime (what users get today) and over the dense model on the same runtime and precision (what pruning itself
bought). `precision` is the deployment asked for (fp32, bf16, int8); `executed_precision` is what the runtime
reports it ran (e.g. "int8 (fp32 fallback)"), and `peak_share` the achieved GMAC/s over the CPU's peak at it.

With int8 on, OpenVINO deploys bf16 as well where the CPU has AVX512_BF16 or AMX: an IR that records the bf16
hint, its Dice checked on the test split like int8's (`quantize(precision="bf16")`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import keras

from segprune._io import write_text
from segprune.cost import flops
from segprune.data.dataset import SegmentationDataset
from segprune.inference import input_channels
from segprune.runtime.benchmark import EXPORT_FORMATS, achieved_gmacs, file_latency
from segprune.runtime.export import FORMATS, export_model
from segprune.runtime.peak import detect_cpu, peak_gmacs
from segprune.runtime.quantize import PRECISIONS as REDUCED_PRECISIONS
from segprune.runtime.quantize import quantize
from segprune.sizes import format_size

REFERENCE = ("onnxruntime", "fp32")  # what a user without segprune deploys: the dense model on ONNX Runtime
DEPLOYABLE = tuple(EXPORT_FORMATS)  # runtimes that run an exported file

Progress = Callable[[str], None]


def check_runtimes(runtimes: Sequence[str]) -> None:
    unknown = [runtime for runtime in runtimes if runtime not in DEPLOYABLE]
    if unknown or not runtimes:
        raise ValueError(f"Sweep runtimes must be among {list(DEPLOYABLE)}; got {list(runtimes)}.")


def measure_deployments(
    rows: list[dict],
    data: SegmentationDataset,
    out_dir: Path,
    runtimes: Sequence[str],
    int8: bool,
    image_size: tuple[int, int],
    threads: int,
    say: Progress,
) -> None:
    """Fills `row["deployments"]` (and `latency_ms`/`speedup` from the first runtime's fp32) for every network row."""
    networks = [row for row in rows if row.get("model_path")]
    if not networks:
        return
    macs = {id(row): flops(keras.saving.load_model(row["model_path"]), image_size).macs for row in networks}
    for row in networks:
        row["deployments"] = []
    for runtime in runtimes:
        reduced = deployed_precisions(runtime) if int8 else []
        files = _deployed_files(networks, data, out_dir / "deploy" / runtime, runtime, reduced, image_size, say)
        say(f"timing {len(files)} models on {runtime} ({' and '.join(['fp32', *reduced])}, 1x{format_size(image_size)}, {threads} threads), interleaved")
        latencies = file_latency([path for _, _, path, _ in files], runtime=runtime, image_size=image_size, threads=threads)
        for (row, precision, path, checked), latency in zip(files, latencies):
            gmacs = achieved_gmacs(macs[id(row)], latency.median_ms)
            peak = peak_gmacs(latency.precision, threads)
            row["deployments"].append(
                {
                    "runtime": runtime,
                    "precision": precision,
                    "executed_precision": latency.precision,
                    "latency_ms": latency.median_ms,
                    "p90_ms": latency.p90_ms,
                    "dice": row["dice"] if checked is None else checked.get("dice_quantized", checked.get("dice_int8")),
                    "mask_agreement": 1.0 if checked is None else checked["mask_agreement"],
                    "gmacs_per_second": gmacs,
                    "peak_share": gmacs / peak if peak else None,
                    "file": str(path),
                }
            )
    _speedups(networks, runtimes[0])


def deployed_precisions(runtime: str) -> list[str]:
    """The reduced precisions `runtime` deploys here, each checked on the test split: int8, and bf16 on OpenVINO
    where the CPU runs it (AVX512_BF16 or AMX; elsewhere OpenVINO would run the file in fp32)."""
    return [
        precision for precision, runtimes in REDUCED_PRECISIONS.items()
        if runtime in runtimes and (precision != "bf16" or detect_cpu().supports("bf16"))
    ]


def _deployed_files(networks, data, folder: Path, runtime: str, reduced: list[str], image_size: tuple[int, int], say: Progress) -> list[tuple]:
    """(row, precision, path, check or None) for every network and precision; files already there (a resumed sweep) are kept."""
    suffix = FORMATS[EXPORT_FORMATS[runtime]]
    files = []
    for row in networks:
        stem = Path(row["model_path"]).stem
        fp32_path = folder / f"{stem}{suffix}"
        reduced_paths = {precision: folder / f"{stem}-{precision}{suffix}" for precision in reduced}
        missing = [precision for precision, path in reduced_paths.items() if not (path.exists() and _check_path(path).exists())]
        model = keras.saving.load_model(row["model_path"]) if missing or not fp32_path.exists() else None
        shape = (1, *image_size, input_channels(model)) if model is not None else None
        if not fp32_path.exists():
            export_model(model, fp32_path, EXPORT_FORMATS[runtime], input_shape=shape)
        files.append((row, "fp32", fp32_path, None))
        for precision, path in reduced_paths.items():
            if precision in missing:
                say(f"{'quantizing' if precision == 'int8' else 'converting'} {stem} to {precision} for {runtime}")
                # never refused here: the sweep records the Dice and the balance point applies the tolerance
                result = quantize(model, data, runtime, out=path, input_shape=shape, tolerance=100.0, precision=precision)
                write_text(_check_path(path), json.dumps(result.to_dict()) + "\n")
            files.append((row, precision, path, json.loads(_check_path(path).read_text())))
    return files


def _check_path(path: Path) -> Path:
    return path.with_name(path.name + ".check.json")


def _speedups(networks: list[dict], primary_runtime: str) -> None:
    dense = next((row for row in networks if row["method"] == "dense"), None)
    dense_by_setting = {(d["runtime"], d["precision"]): d["latency_ms"] for d in (dense or {}).get("deployments", [])}
    reference_ms = dense_by_setting.get(REFERENCE) or dense_by_setting.get((primary_runtime, "fp32"))
    for row in networks:
        for deployment in row["deployments"]:
            same = dense_by_setting.get((deployment["runtime"], deployment["precision"]))
            deployment["speedup_vs_reference"] = reference_ms / deployment["latency_ms"] if reference_ms else None
            deployment["speedup_vs_dense_same_runtime"] = same / deployment["latency_ms"] if same else None
        primary = next(d for d in row["deployments"] if d["runtime"] == primary_runtime and d["precision"] == "fp32")
        primary_dense = dense_by_setting.get((primary_runtime, "fp32"))
        row["latency_ms"] = primary["latency_ms"]
        row["speedup"] = primary_dense / primary["latency_ms"] if primary_dense else None
