"""The built-in brain task: nine classes, a split by slabs with gaps, packaged with its licence, and scored with intervals."""

import fnmatch
import json
import tomllib
from pathlib import Path

import keras
import numpy as np

from segprune.cli import main
from segprune.data import load_data
from segprune.data.brain import BRAIN_FILE, CLASS_NAMES, slab_split

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_load_data_brain_is_nine_classes_of_grayscale_slices():
    data = load_data("brain")
    assert data.name == "brain" and data.num_classes == len(CLASS_NAMES) == 9 and data.image_channels == 1
    assert [len(data.ids(split)) for split in ("train", "val", "test")] == [60, 16, 36]
    image, mask = data.load(data.ids("test")[10])
    assert image.shape == (192, 160, 1) and mask.shape == (192, 160)
    assert image.dtype == np.float32 and 0.0 <= image.min() < image.max() <= 1.0
    present = np.unique(np.concatenate([data.load(sample_id)[1].ravel() for sample_id in data.ids("test")]))
    assert present.tolist() == list(range(9))  # every structure is in the test slices


def test_test_slabs_are_two_slices_away_from_every_training_slice():
    data = load_data("brain")
    depth = {split: np.array([int(sample_id[1:]) for sample_id in data.ids(split)]) for split in ("train", "val", "test")}
    assert not set(depth["train"]) & set(depth["test"]) and not set(depth["val"]) & set(depth["test"])
    for held_out in ("test", "val"):
        assert np.abs(depth[held_out][:, None] - depth["train"][None, :]).min() == 3  # 2 dropped slices between
    assert np.abs(depth["test"][:, None] - depth["val"][None, :]).min() == 3
    runs = np.split(depth["test"], np.flatnonzero(np.diff(depth["test"]) > 1) + 1)
    assert [len(run) for run in runs] == [6] * 6  # six slabs of six neighbouring slices, spread over the brain
    assert slab_split(25) == {"train": list(range(10)), "test": list(range(12, 18)), "val": list(range(20, 23))}


def test_brain_data_is_packaged_with_its_licence_and_small():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["segprune.data"]
    folder = BRAIN_FILE.parent
    shipped = sorted(path.relative_to(folder.parent.parent).as_posix() for path in folder.iterdir())
    assert shipped == ["builtin/brain/README.md", "builtin/brain/brain.npz", "builtin/brain/debian-copyright.txt"]
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in globs) for name in shipped), globs
    assert sum(path.stat().st_size for path in folder.iterdir()) < 6e6
    readme = (folder / "README.md").read_text()
    assert "BSD-3-clause" in readme and "Chris Rorden" in readme and "Tzourio-Mazoyer" in readme


def test_evaluate_json_on_brain_carries_intervals_per_class(tmp_path, capsys):
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(9, 1, activation="softmax")(inputs))
    path = tmp_path / "tiny.keras"
    model.save(path)
    assert main(["evaluate", str(path), "--data", "brain", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["num_images"] == 36 and row["class_names"][8] == "cerebellum"
    for score in ("dice", "foreground_iou", "iou", "pixel_accuracy"):
        low, high = row[f"{score}_interval"]
        assert low <= row[score] <= high, score
    assert len(row["dice_per_class"]) == len(row["dice_per_class_interval"]) == len(row["iou_per_class_interval"]) == 9
