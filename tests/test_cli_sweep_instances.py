"""`segprune sweep --instances / --mask-rcnn`: instance rows beside the segmentation rows, and the inputs refused before any work."""

import json

import numpy as np

from segprune.cli import main
from segprune.models import unet
from tests.conftest import write_png
from tests.fixtures import one_error


def _write_data(root, count=5, size=64, instances=True):
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.integers(0, 40, (size, size), dtype=np.uint8)
        labels = np.zeros((size, size), np.uint16)
        for object_id, (top, left) in enumerate(rng.integers(2, size - 14, (3, 2)), start=1):
            labels[top : top + 10, left : left + 10] = object_id
        image[labels > 0] = 200
        write_png(root / "images" / f"t{index}.png", image)
        write_png(root / "masks" / f"t{index}.png", (labels > 0).astype(np.uint8))
        if instances:
            write_png(root / "instances" / f"t{index}.png", labels)
    (root / "split.txt").write_text("".join(f"{'test' if index >= count - 2 else 'train'} t{index}\n" for index in range(count)))
    return root


def _unet(tmp_path):
    path = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=4, depth=1).save(path)
    return path


def test_instance_rows_follow_the_segmentation_rows_and_the_report_names_the_missing_ones(tmp_path, capsys):
    root, out = _write_data(tmp_path / "cells"), tmp_path / "sweep"
    command = ["sweep", "--model", str(_unet(tmp_path)), "--data", str(root), "--out", str(out), "--methods", "classical-otsu",
               "--image-size", "64", "--instances"]
    assert main(command) == 0
    rows = json.loads((out / "instance_results.json").read_text())
    assert [(row["method"], row["budget"]) for row in rows] == [("dense+watershed", None), ("classical-watershed", None)]
    assert rows[0]["latency_ms"] == json.loads((out / "results.json").read_text())[0]["latency_ms"] > 0
    page = (out / "report.html").read_text()
    assert 'id="instances"' in page and "Mask R-CNN rows were not run" in page and "--mask-rcnn runs/mask_rcnn.keras" in page


def test_mask_rcnn_rows_need_instance_labels_and_a_mask_rcnn_file(tmp_path, capsys):
    model, out = _unet(tmp_path), tmp_path / "sweep"
    plain = _write_data(tmp_path / "plain", instances=False)
    assert main(["sweep", "--model", str(model), "--data", str(plain), "--out", str(out), "--mask-rcnn", str(model)]) == 2
    assert "has no instances/ folder" in one_error(capsys.readouterr().err)
    cells = _write_data(tmp_path / "cells")
    assert main(["sweep", "--model", str(model), "--data", str(cells), "--out", str(out), "--mask-rcnn", str(model)]) == 2
    assert "not a Mask R-CNN" in one_error(capsys.readouterr().err)
    assert not out.exists(), "refused before the sweep wrote anything"
