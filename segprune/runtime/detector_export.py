"""The whole Mask R-CNN in one file (ONNX or OpenVINO IR), verified detection by detection against `MaskRCNN.detect`.

`segprune.models.mask_rcnn.export.detection_function` is the detector as one TensorFlow graph (proposals, NMS,
RoIAlign, both heads, mask pasting); here it is converted with tf2onnx (OpenVINO reads that ONNX file) and run
next to the Keras detector on a random batch and on real images. The file is put in place only when both find
the same objects: the same number per image, the same classes in the same order, boxes and scores within
`DetectionTolerance`, and every full-size mask overlapping its Keras twin by at least `mask_iou`.

Measured on the test configuration (tests/models/test_mask_rcnn_export.py), ONNX Runtime and OpenVINO alike: boxes
within 4e-6 px, scores within 1e-7, every mask identical (IoU 1.0). The default tolerance leaves room for a pixel
flipped at a mask's edge (the graph pastes in float32, `paste_mask` in float64).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segprune.models.mask_rcnn.export import OUTPUT_NAMES, DetectorShape, detection_function, detections_from_outputs, detector_shape
from segprune.models.mask_rcnn.model import Detections, MaskRCNN
from segprune.runtime import _tensorflow
from segprune.runtime.export import ExportMismatchError, OnnxRunner, onnx_to_openvino, open_runner, staged_file

DETECTOR_FORMATS = {"onnx": ".onnx", "openvino": ".xml"}


@dataclass(frozen=True)
class DetectionTolerance:
    """How far an exported detector's detections may lie from Keras's (counts and classes must be equal).

    Attributes:
        box_pixels: Largest difference of a box coordinate, in pixels.
        score: Largest difference of a score.
        mask_iou: Smallest IoU of a detection's full-size mask with its Keras twin.
    """

    box_pixels: float = 0.01
    score: float = 1e-4
    mask_iou: float = 0.9


@dataclass(frozen=True)
class DetectionAgreement:
    """How closely an exported detector's detections matched Keras's, over `images` images and `detections` objects.

    Attributes:
        box_pixels: Largest box-coordinate difference (pixels); 0 with no detections.
        score: Largest score difference.
        mask_iou: Smallest mask IoU of a detection with its Keras twin (1 with no detections).
    """

    images: int
    detections: int
    box_pixels: float = 0.0
    score: float = 0.0
    mask_iou: float = 1.0

    def within(self, tolerance: DetectionTolerance) -> bool:
        return self.box_pixels <= tolerance.box_pixels and self.score <= tolerance.score and self.mask_iou >= tolerance.mask_iou

    def __str__(self) -> str:
        return (
            f"{self.detections} detections on {self.images} image(s): boxes within {self.box_pixels:.2g} px, scores within "
            f"{self.score:.2g}, smallest mask IoU {self.mask_iou:.4f}"
        )


class DetectionMismatchError(ExportMismatchError):
    """An exported detector finds other objects than the Keras detector, or the same ones beyond tolerance."""


def compare_detections(expected: Sequence[Detections], got: Sequence[Detections]) -> DetectionAgreement:
    """Detection-by-detection agreement of two detectors on the same images (both ordered best score first).

    Raises:
        DetectionMismatchError: The numbers of images or detections, or the classes, differ.

    Example:
        >>> compare_detections(model.detect(images), runner.detect(images)).mask_iou
        1.0
    """
    if len(expected) != len(got):
        raise DetectionMismatchError(f"Keras gives detections for {len(expected)} image(s), the export for {len(got)}.")
    agreements = [_compare_image(index, e, g) for index, (e, g) in enumerate(zip(expected, got))]
    return combine_agreements(agreements)


def _compare_image(index: int, expected: Detections, got: Detections) -> DetectionAgreement:
    if len(expected) != len(got):
        raise DetectionMismatchError(f"Image {index}: Keras finds {len(expected)} objects, the export {len(got)}.")
    if not np.array_equal(expected.class_ids, got.class_ids):
        raise DetectionMismatchError(f"Image {index}: the classes differ (Keras {expected.class_ids.tolist()}, export {got.class_ids.tolist()}).")
    if len(expected) == 0:
        return DetectionAgreement(1, 0)
    intersection = np.logical_and(expected.masks, got.masks).sum(axis=(1, 2))
    union = np.logical_or(expected.masks, got.masks).sum(axis=(1, 2))
    mask_iou = np.where(union > 0, intersection / np.maximum(union, 1), 1.0)
    return DetectionAgreement(
        1, len(expected), float(np.max(np.abs(expected.boxes - got.boxes))), float(np.max(np.abs(expected.scores - got.scores))), float(mask_iou.min())
    )


def combine_agreements(agreements: Iterable[DetectionAgreement]) -> DetectionAgreement:
    """The agreement over several batches: counts summed, the worst of each difference."""
    agreements = list(agreements)
    return DetectionAgreement(
        sum(a.images for a in agreements), sum(a.detections for a in agreements), max((a.box_pixels for a in agreements), default=0.0),
        max((a.score for a in agreements), default=0.0), min((a.mask_iou for a in agreements), default=1.0),
    )


def export_detector(
    model: MaskRCNN,
    path: str | Path,
    format: str = "onnx",
    input_shape: Sequence[int] = (1, 128, 128),
    samples: Sequence[np.ndarray] = (),
    min_score: float | None = None,
    tolerance: DetectionTolerance = DetectionTolerance(),  # frozen: a shared default is never mutated
) -> DetectionAgreement:
    """Writes the whole detector (image in; boxes, scores, classes, masks out) as ONNX or OpenVINO IR, verified.

    The file runs on a random batch and on `samples` (images (H, W, C) of the export's height and width, grouped
    into batches of its batch size); its detections must match `model.detect` (see `DetectionTolerance`) or
    nothing is written at `path`. Outputs, by name: `boxes`, `scores`, `class_ids`, `masks` and `num_detections`,
    padded to `config.max_detections` per image (`DetectorRunner.detect` unpads them).

    Args:
        model: The detector.
        path: `.onnx`, or `.xml` for OpenVINO (its weights go to a `.bin` beside it; compiled in fp32).
        format: "onnx" or "openvino".
        input_shape: Fixed `(batch, height, width[, channels])`, sides multiples of `config.size_multiple`.
        samples: Real images to verify on besides the random batch.
        min_score: Class probability a detection needs; `config.detection_min_score` when None.
        tolerance: How close the detections must be.

    Returns:
        The agreement measured.

    Example:
        >>> export_detector(model, "runs/mask_rcnn.onnx", input_shape=(1, 256, 256))
        DetectionAgreement(images=1, detections=12, box_pixels=3.8e-06, score=6e-08, mask_iou=1.0)
    """
    if format not in DETECTOR_FORMATS:
        raise ValueError(f"A whole Mask R-CNN exports to {list(DETECTOR_FORMATS)}; got format {format!r}.")
    path = Path(path)
    if path.suffix != DETECTOR_FORMATS[format]:
        raise ValueError(f"A {format} detector is written to a {DETECTOR_FORMATS[format]} file; got {str(path)!r}.")
    shape = detector_shape(model, input_shape)
    batches = verification_batches(shape, samples)
    expected = [model.detect(batch, min_score=min_score) for batch in batches]
    with staged_file(path) as temporary:
        write_detector(model, temporary, shape, min_score)
        runner = DetectorRunner(temporary, threads=2)
        agreement = combine_agreements(compare_detections(wanted, runner.detect(batch)) for batch, wanted in zip(batches, expected))
        if not agreement.within(tolerance):
            raise DetectionMismatchError(f"The {format} detector differs from Keras: {agreement}; tolerance {tolerance}. The file was not written.")
    return agreement


def write_detector(model: MaskRCNN, path: str | Path, shape: DetectorShape, min_score: float | None = None) -> None:
    """Writes the whole-detector graph at `shape`, unverified (`export_detector` verifies): ONNX, or an OpenVINO IR
    (`.xml`) converted from it and recorded as fp32."""
    function, signature = detection_function(model, shape.as_tuple(), min_score)
    path = Path(path)
    if path.suffix == ".onnx":
        _tensorflow.write_function_onnx(function, signature, path)
        return
    with tempfile.TemporaryDirectory(prefix="segprune-detector-") as folder:
        onnx_path = Path(folder) / "detector.onnx"
        _tensorflow.write_function_onnx(function, signature, onnx_path)
        onnx_to_openvino(onnx_path, path, precision="fp32")


def verification_batches(shape: DetectorShape, samples: Sequence[np.ndarray]) -> list[np.ndarray]:
    """A random batch of `shape`, then the samples in batches of its batch size (the last one filled up with the first sample)."""
    batches = [np.random.default_rng(0).random(shape.as_tuple()).astype(np.float32)]
    samples = [np.asarray(sample, np.float32) for sample in samples]
    for sample in samples:
        if sample.shape != shape.as_tuple()[1:]:
            raise ValueError(f"Verification images must be {shape.as_tuple()[1:]} (height, width, channels) like the export; got {sample.shape}.")
    for start in range(0, len(samples), shape.batch):
        group = samples[start : start + shape.batch]
        group += [samples[0]] * (shape.batch - len(group))
        batches.append(np.stack(group))
    return batches


class DetectorRunner:
    """Runs an exported whole detector (`.onnx` on ONNX Runtime, or OpenVINO with `runtime="openvino"`; `.xml` on OpenVINO).

    `runner(batch)` returns the raw padded outputs (what a benchmark times); `runner.detect(batch)` one `Detections`
    per image, as `MaskRCNN.detect` gives them. OpenVINO compiles at `precision` ("fp32" unless told "bf16").

    Example:
        >>> detections = DetectorRunner("runs/mask_rcnn.xml", threads=2).detect(images)
    """

    def __init__(self, path: str | Path, threads: int = 2, runtime: str | None = None, precision: str | None = None) -> None:
        self.runner = open_runner(path, threads, runtime, precision)
        names = _output_names(self.runner)
        positions = {name: index for index, aliases in enumerate(names) for name in aliases}
        missing = [name for name in OUTPUT_NAMES if name not in positions]
        if missing:
            raise ValueError(
                f"{str(path)!r} is not a whole Mask R-CNN: its outputs are {[sorted(a) for a in names]}, without {missing}. Write one "
                "with segprune.runtime.detector_export.export_detector."
            )
        self.positions = [positions[name] for name in OUTPUT_NAMES]
        self.executed_precision = self.runner.executed_precision

    @property
    def input_shape(self) -> tuple:
        return self.runner.input_shape

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.runner.outputs(batch)

    def detect(self, images: np.ndarray, min_score: float | None = None) -> list[Detections]:
        """Detections per image. The score threshold is part of the file: `min_score` must be None."""
        if min_score is not None:
            raise ValueError("An exported detector keeps the score threshold it was exported with; export again with min_score=... for another.")
        outputs = self.runner.outputs(np.asarray(images, np.float32))
        return detections_from_outputs({name: outputs[position] for name, position in zip(OUTPUT_NAMES, self.positions)})


def _output_names(runner) -> list[set[str]]:
    """Each output's names, in the order `runner.outputs` returns them (an OpenVINO output may have several)."""
    if isinstance(runner, OnnxRunner):
        return [{output.name} for output in runner.session.get_outputs()]
    return [set(output.get_names()) for output in runner.compiled.outputs]
