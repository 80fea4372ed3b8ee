"""The report's instance section: every object's boundary in its own colour, the table, and the rows that were not run."""

import io

import numpy as np
import pytest
from PIL import Image

from segprune.report.html import write_report
from segprune.report.instances import instance_outlines, instance_section, outline_colour, outline_overlay


def _labels() -> np.ndarray:
    labels = np.zeros((20, 24), np.int32)
    labels[2:8, 2:8] = 1  # a 6x6 square
    labels[10:15, 8:14] = 2
    labels[10:15, 14:18] = 3  # touches object 2
    return labels


def _ring(top, left, bottom, right) -> np.ndarray:
    ring = np.zeros((20, 24), bool)
    ring[top:bottom, left:right] = True
    ring[top + 1 : bottom - 1, left + 1 : right - 1] = False
    return ring


def test_each_objects_boundary_takes_its_own_colour_and_nothing_else_changes():
    image = np.linspace(0, 1, 20 * 24, dtype=np.float32).reshape(20, 24, 1)
    overlay = outline_overlay(image, _labels())
    grey = np.repeat(np.round(255 * image[..., 0] / image.max()).astype(np.uint8)[..., None], 3, axis=-1)
    outlines = {1: _ring(2, 2, 8, 8), 2: _ring(10, 8, 15, 14), 3: _ring(10, 14, 15, 18)}
    for object_id, ring in outlines.items():
        assert (overlay[ring] == outline_colour(object_id)).all(), f"object {object_id}'s outline"
    assert len({tuple(outline_colour(k)) for k in outlines}) == 3
    untouched = ~np.any(list(outlines.values()), axis=0)
    np.testing.assert_allclose(overlay[untouched].astype(int), grey[untouched].astype(int), atol=1)


def test_outlines_need_one_label_per_pixel():
    with pytest.raises(ValueError, match="one label per pixel"):
        outline_overlay(np.zeros((8, 8)), np.zeros((4, 4), np.int32))


def _rows(folder):
    labels = _labels()
    image = np.where(labels > 0, 0.9, 0.1).astype(np.float32)[..., None]
    np.savez_compressed(folder / "tiles.npz", images=image[None], labels=labels[None])
    rows = []
    for method, budget, family in (("mask-rcnn", None, "mask-rcnn"), ("mask-rcnn-l1", 0.5, "mask-rcnn"), ("classical-watershed", None, "classical")):
        path = folder / f"{method}-{budget}.npz"
        np.savez_compressed(path, labels=labels[None])
        rows.append({"method": method, "budget": budget, "family": family, "ap": 0.6, "ap50": 0.8, "ap75": 0.7, "dsb": 0.5,
                     "union_dice": 0.9, "macs": 2e8 if family != "classical" else None, "macs_ratio": None, "latency_ms": 7.0,
                     "python_ms_per_image": 70.0, "labels_path": str(path), "finetune_epochs": 40 if budget else 0, "finetune_seconds": 90.0})
    return rows


def test_the_figure_shows_every_objects_outline_colour(tmp_path):
    png = instance_outlines(_rows(tmp_path), tmp_path)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    for object_id in (1, 2, 3):
        assert (pixels == outline_colour(object_id)).all(axis=-1).sum() >= 4 * 10, f"object {object_id}'s outline is drawn in every line"


def test_the_report_has_the_instance_table_and_says_which_rows_were_not_run(tmp_path):
    rows = _rows(tmp_path)
    section = instance_section(rows, ["Mask R-CNN rows were not run: train one and add them with `segprune demo --mask-rcnn FILE`."])
    assert "Mask R-CNN, l1 at 0.5" in section and "classical watershed" in section and "40 epochs, 90 s" in section
    assert "<td>0.600</td><td>0.800</td>" in section and "<td>200.0</td>" in section
    page = write_report(tmp_path / "report.html", "t", [], None, 1.0, {}, rows, ["Mask R-CNN rows were not run"]).read_text()
    assert 'id="instances"' in page and "Mask R-CNN rows were not run" in page
    assert instance_section([], []) == ""
