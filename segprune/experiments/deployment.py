"""A sweep's networks deployed: exported at a fixed shape per runtime, optionally quantized to int8, timed.

All files of one runtime are timed together in interleaved rounds, so the ratios between them are fair.
Every deployment is recorded on its row as `{runtime, precision, latency_ms, dice, mask_agreement, ...}`
with two speed-ups: over the dense fp32 model on ONNX Runtime (what users get today) and over the dense
model on the same runtime and precision (what pruning itself bought).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import keras

from segprune._io import write_text
from segprune.data.dataset import SegmentationDataset
from segprune.inference import input_channels
from segprune.runtime.benchmark import EXPORT_FORMATS, file_latency
from segprune.runtime.export import FORMATS, export_model
from segprune.runtime.quantize import RUNTIMES as QUANTIZABLE
from segprune.runtime.quantize import quantize

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
    image_size: int,
    threads: int,
    say: Progress,
) -> None:
    """Fills `row["deployments"]` (and `latency_ms`/`speedup` from the first runtime's fp32) for every network row."""
    networks = [row for row in rows if row.get("model_path")]
    if not networks:
        return
    for row in networks:
        row["deployments"] = []
    for runtime in runtimes:
        files = _deployed_files(networks, data, out_dir / "deploy" / runtime, runtime, int8 and runtime in QUANTIZABLE, image_size, say)
        precisions = "fp32 and int8" if int8 and runtime in QUANTIZABLE else "fp32"
        say(f"timing {len(files)} models on {runtime} ({precisions}, 1x{image_size}x{image_size}, {threads} threads), interleaved")
        latencies = file_latency([path for _, _, path, _ in files], runtime=runtime, image_size=image_size, threads=threads)
        for (row, precision, path, checked), latency in zip(files, latencies):
            row["deployments"].append(
                {
                    "runtime": runtime,
                    "precision": precision,
                    "latency_ms": latency.median_ms,
                    "p90_ms": latency.p90_ms,
                    "dice": row["dice"] if checked is None else checked["dice_int8"],
                    "mask_agreement": 1.0 if checked is None else checked["mask_agreement"],
                    "file": str(path),
                }
            )
    _speedups(networks, runtimes[0])


def _deployed_files(networks, data, folder: Path, runtime: str, int8: bool, image_size: int, say: Progress) -> list[tuple]:
    """(row, precision, path, int8 check or None) for every network; files already there (a resumed sweep) are kept."""
    suffix = FORMATS[EXPORT_FORMATS[runtime]]
    files = []
    for row in networks:
        stem = Path(row["model_path"]).stem
        fp32_path, int8_path = folder / f"{stem}{suffix}", folder / f"{stem}-int8{suffix}"
        needs_int8 = int8 and not (int8_path.exists() and _check_path(int8_path).exists())
        if fp32_path.exists() and not needs_int8:
            model = None
        else:
            model = keras.saving.load_model(row["model_path"])
        shape = (1, image_size, image_size, input_channels(model)) if model is not None else None
        if not fp32_path.exists():
            export_model(model, fp32_path, EXPORT_FORMATS[runtime], input_shape=shape)
        files.append((row, "fp32", fp32_path, None))
        if int8:
            if needs_int8:
                say(f"quantizing {stem} to int8 for {runtime}")
                # never refused here: the sweep records the int8 Dice and the balance point applies the tolerance
                result = quantize(model, data, runtime, out=int8_path, input_shape=shape, tolerance=100.0)
                write_text(_check_path(int8_path), json.dumps(result.to_dict()) + "\n")
            files.append((row, "int8", int8_path, json.loads(_check_path(int8_path).read_text())))
    return files


def _check_path(int8_path: Path) -> Path:
    return int8_path.with_name(int8_path.name + ".check.json")


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
