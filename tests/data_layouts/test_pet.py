"""The Oxford-IIIT Pet layout, on a miniature copy written by the test."""

import numpy as np
import pytest
from PIL import Image

from segprune.data import DataError, load_data, pet_dataset
from tests.conftest import write_png


@pytest.fixture
def pet_root(tmp_path):
    root = tmp_path / "oxford-iiit-pet"
    rng = np.random.default_rng(0)
    stems = [f"Abyssinian_{i}" for i in range(1, 7)]
    for stem in stems:
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.jpg")
        trimap = np.full((20, 24), 2, dtype=np.uint8)
        trimap[5:15, 6:18] = 3
        trimap[7:13, 8:16] = 1
        write_png(root / "annotations" / "trimaps" / f"{stem}.png", trimap)
    (root / "annotations" / "trainval.txt").write_text("".join(f"{s} 1 1 1\n" for s in stems[:4]))
    (root / "annotations" / "test.txt").write_text("".join(f"{s} 1 1 1\n" for s in stems[4:]))
    return root


def test_trimaps_map_to_classes_with_border_ignored(pet_root):
    data = load_data(pet_root)
    assert data.num_classes == 2 and data.ignore_index == 255
    assert data.ids("test") == ["Abyssinian_5", "Abyssinian_6"]
    assert len(data.ids("train")) + len(data.ids("val")) == 4
    image, mask = data.load("Abyssinian_1")
    assert image.shape == (20, 24, 3)
    assert mask[10, 12] == 1 and mask[0, 0] == 0 and mask[5, 6] == 255


def test_border_as_third_class(pet_root):
    data = pet_dataset(pet_root, border="class")
    assert data.num_classes == 3 and data.ignore_index is None
    assert data.load("Abyssinian_1")[1][5, 6] == 2


def test_bad_trimap_is_named(pet_root):
    write_png(pet_root / "annotations" / "trimaps" / "Abyssinian_2.png", np.zeros((20, 24), dtype=np.uint8))
    data = pet_dataset(pet_root)
    with pytest.raises(DataError, match="Abyssinian_2.png"):
        data.load("Abyssinian_2")


def test_bad_border_mode(pet_root):
    with pytest.raises(ValueError, match="border"):
        pet_dataset(pet_root, border="drop")
