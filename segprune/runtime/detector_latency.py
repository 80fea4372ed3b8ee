"""The whole Mask R-CNN timed as it ships: one exported graph (proposals, NMS, RoIAlign, both heads, mask pasting).

A search to a latency target on a Mask R-CNN prices what the user runs, not the trunk alone: on the nuclei tiles the
RoI heads cost about 3.5 times the trunk's MACs per tile, so the trunk's latency is a small part of the detector's
(`benchmarks/mask_rcnn_nuclei.py`). The heads' time depends on how many detections an image gives: timed at the
model's own score threshold, a pruned candidate that is not fine-tuned yet (or one that finds nothing) would come out
fast for detecting less. So every detector is timed at full load, every score kept (`min_score=0`): its mask head and
pasting run on `config.max_detections` regions, the same work for dense and pruned. Timing files are written
unverified (`write_detector`); the file a user deploys is verified by `segprune export`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from segprune.models.mask_rcnn.export import detector_shape
from segprune.models.mask_rcnn.model import MaskRCNN
from segprune.runtime.benchmark import DETECTOR_RUNTIMES, file_latency
from segprune.runtime.detector_export import DETECTOR_FORMATS, write_detector
from segprune.runtime.latency import check_runtime
from segprune.sizes import as_image_size

FULL_LOAD_MIN_SCORE = 0.0  # every region a detection: the same head and pasting work for every model timed


def time_detectors(
    detectors: Sequence[MaskRCNN],
    image_size: int | Sequence[int],
    threads: int = 2,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
    rounds: int = 30,
) -> list[float]:
    """Median latency (ms, one image) of each whole detector exported as one graph, interleaved in one run.

    Each detector is written at 1 x height x width keeping every score (`min_score=0`: its heads run on
    `config.max_detections` regions whatever it finds) and timed on the same uniform random image.

    Args:
        detectors: The detectors (a dense one and pruned ones).
        image_size: N or (height, width), multiples of the detectors' `config.size_multiple`.
        threads: Intra-op threads.
        runtime: "onnxruntime" or "openvino".
        precision: "fp32", or "bf16" on OpenVINO; a whole detector has no int8 form here.
        rounds: Timed rounds (each detector once per round).

    Example:
        >>> dense_ms, pruned_ms = time_detectors([dense, pruned], 128, threads=2)
    """
    format = check_detector_timing(runtime, precision)
    height, width = as_image_size(image_size)
    with tempfile.TemporaryDirectory(prefix="segprune-detectors-") as folder:
        paths = []
        for index, detector in enumerate(detectors):
            paths.append(Path(folder) / f"detector{index}{DETECTOR_FORMATS[format]}")
            write_detector(detector, paths[-1], detector_shape(detector, (1, height, width)), min_score=FULL_LOAD_MIN_SCORE)
        latencies = file_latency(paths, runtime, (height, width), threads=threads, rounds=rounds, precision="bf16" if precision == "bf16" else None)
    return [float(latency.median_ms) for latency in latencies]


def check_detector_timing(runtime: str, precision: str) -> str:
    """Refuses a runtime or precision a whole detector cannot be timed at (a search calls it before any work);
    returns the export format."""
    check_runtime(runtime, precision)
    if precision == "int8":
        raise ValueError(
            "A whole Mask R-CNN is timed in fp32 (or bf16 on openvino): its graph (NMS, RoIAlign, mask pasting) has no int8 "
            "form in segprune. Search with precision fp32 (--precision fp32), or quantize the trunk after the search."
        )
    return DETECTOR_RUNTIMES[runtime]  # check_runtime let through only the runtimes a whole detector is written for
