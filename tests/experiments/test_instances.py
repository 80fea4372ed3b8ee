"""Instance rows of a sweep on a tiny Mask R-CNN and a tiny U-Net: every row scored, timed where it runs a network, resumable."""

import json
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

import segprune.experiments.instances as instances_module
from segprune._io import save_model
from segprune.data.instances import InstanceDataset, instances_from_labels
from segprune.experiments import InstanceSweepConfig, missing_mask_rcnn_note, run_instance_sweep
from segprune.experiments.instances import union_dice
from segprune.models import unet
from segprune.models.mask_rcnn import load_mask_rcnn, mask_rcnn
from segprune.report.instances import instance_outlines
from tests.fixtures import TINY_MASK_RCNN


def _tiles() -> InstanceDataset:
    labels = np.zeros((64, 64), np.uint16)
    labels[8:20, 10:22] = 1
    labels[36:46, 30:44] = 2
    labels[36:46, 44:52] = 3  # touches object 2: the watershed rows must split them
    image = np.where(labels > 0, 0.8, 0.1).astype(np.float32)[..., None]
    instances = instances_from_labels(labels)
    return InstanceDataset("tiles", 2, 1, {"train": ["a", "b"], "val": ["a"], "test": ["b"]}, lambda _: (image, instances))


def test_union_dice_counts_pixels_of_the_union_masks():
    truth = instances_from_labels(np.array([[1, 1, 0, 2], [0, 0, 0, 2]], np.uint16))
    predicted = instances_from_labels(np.array([[1, 0, 0, 0], [0, 0, 2, 2]], np.uint16))  # 3 predicted pixels, 2 of them among the 4 true ones
    assert union_dice([truth], [predicted]) == pytest.approx(2 * 2 / (4 + 3))
    assert union_dice([truth], [truth]) == 1.0


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("instances")
    network = unet(num_classes=2, input_channels=1, base_filters=4, depth=1)
    unet_path = save_model(network, out / "unet.keras")
    networks = [{"method": "dense", "budget": None, "model_path": str(unet_path), "latency_ms": 1.5}]
    config = InstanceSweepConfig(budgets=(0.5,), finetune_epochs=1, image_size=64, round_to=1)
    detector = mask_rcnn(detection_min_score=0.0, max_detections=5, **TINY_MASK_RCNN)
    messages, timed = [], []

    def file_latency(paths, runtime, image_size, threads):
        """Stands in for the ONNX Runtime timing: 10 ms for the first file, 20 for the second, ..., so a row given
        another row's figure, or none, shows."""
        timed.append((runtime, [Path(path).name for path in paths]))
        return [SimpleNamespace(median_ms=10.0 * (index + 1)) for index in range(len(paths))]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(instances_module, "file_latency", file_latency)
        rows = run_instance_sweep(_tiles(), out, networks, detector, config, messages.append)
    return out, networks, detector, config, rows, messages, timed


def test_rows_carry_instance_figures_macs_and_latency(swept):
    out, _, detector, _, rows, _, timed = swept
    assert [(r["method"], r["budget"]) for r in rows] == [
        ("mask-rcnn", None), ("mask-rcnn-l1", 0.5), ("dense+watershed", None), ("classical-watershed", None)
    ]
    for row in rows:
        assert all(0.0 <= row[key] <= 1.0 for key in ("ap", "ap50", "ap75", "dsb", "union_dice")), row
        assert np.load(row["labels_path"])["labels"].shape == (1, 64, 64)
    dense, pruned, unet_row, classical = rows
    assert [runtime for runtime, _ in timed] == ["onnxruntime"] and len(timed[0][1]) == 2, "both trunks timed together on ONNX Runtime"
    trunk_files = timed[0][1]
    assert [trunk_files.index(f"{Path(row['model_path']).stem}-trunk.onnx") for row in (dense, pruned)] == [0, 1]
    assert (dense["latency_ms"], pruned["latency_ms"]) == (10.0, 20.0), "each trunk's row carries its own trunk's timing"
    assert dense["macs_ratio"] == 1.0 and pruned["macs_ratio"] <= 0.5
    assert pruned["finetune_epochs"] == 1 and "best validation mask AP" in pruned["notes"][0]
    assert load_mask_rcnn(pruned["model_path"]).trunk.count_params() < detector.trunk.count_params()
    assert unet_row["latency_ms"] == 1.5 and unet_row["macs_ratio"] == 1.0, "the U-Net's own timing, from its sweep row"
    assert classical["latency_ms"] is None and classical["macs"] is None and classical["python_ms_per_image"] > 0
    # the image is bright exactly on the objects: smoothed Otsu finds most of their pixels, the watershed splits them
    assert classical["union_dice"] > 0.8 and len(np.unique(np.load(classical["labels_path"])["labels"])) >= 4
    assert json.loads((out / "instance_results.json").read_text()) == rows
    assert (out / "instance_results.csv").read_text().startswith("method,budget,family,ap,ap50")


def test_a_second_run_resumes_every_row(swept):
    out, networks, detector, config, rows, _, _ = swept
    messages = []
    retimed = [{**networks[0], "latency_ms": 2.5}]  # the segmentation sweep times its networks again on every run
    again = run_instance_sweep(_tiles(), out, retimed, detector, config, messages.append)
    assert sum("resumed" in message for message in messages) == len(rows)
    assert [r["ap"] for r in again] == [r["ap"] for r in rows]
    assert again[2]["latency_ms"] == 2.5, "a resumed U-Net + watershed row carries this run's timing of its U-Net"
    keras.utils.set_random_seed(123)
    with pytest.raises(ValueError, match="another Mask R-CNN"):
        run_instance_sweep(_tiles(), out, retimed, mask_rcnn(**TINY_MASK_RCNN), config)


def test_outline_figure_is_drawn_from_the_saved_label_images(swept):
    out, _, _, _, rows, _, _ = swept
    png = instance_outlines(rows, out / "instances")
    assert png.startswith(b"\x89PNG") and len(png) > 5_000


def test_a_note_names_the_command_that_adds_missing_rows():
    note = missing_mask_rcnn_note("segprune demo --mask-rcnn runs/mask_rcnn.keras")
    assert "not run" in note and "segprune train --data nuclei --model mask-rcnn" in note and "--mask-rcnn runs/mask_rcnn.keras" in note


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="one-shot by"):
        InstanceSweepConfig(criteria=("taylor",))
    with pytest.raises(ValueError, match=r"fractions of the dense trunk"):
        InstanceSweepConfig(budgets=(1.5,))
