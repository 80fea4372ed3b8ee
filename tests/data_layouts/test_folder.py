"""Folder datasets: layouts that work, and each kind of bad input named with its file."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from segprune.data import DataError, folder_dataset, load_data
from tests.conftest import write_png


def test_reads_pairs_and_makes_a_seeded_split(make_folder_dataset):
    root = make_folder_dataset(count=10)
    data = folder_dataset(root, seed=3)
    assert data.num_classes == 2
    assert data.image_channels == 1
    all_ids = data.ids("train") + data.ids("val") + data.ids("test")
    assert sorted(all_ids) == sorted(f"tile{i}" for i in range(10))
    assert len(data.ids("val")) >= 1 and len(data.ids("test")) >= 1
    assert folder_dataset(root, seed=3).splits == data.splits
    image, mask = data.load("tile0")
    assert image.dtype == np.float32 and image.shape == (32, 32, 1)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert mask.dtype == np.int32 and set(np.unique(mask)) <= {0, 1}


def test_split_file_is_honoured_and_val_is_carved_from_train(make_folder_dataset):
    lines = [f"{'test' if i < 2 else 'train'} tile{i}" for i in range(8)]
    data = folder_dataset(make_folder_dataset(count=8, split_lines=lines), val_fraction=0.2)
    assert data.ids("test") == ["tile0", "tile1"]
    assert len(data.ids("val")) == 1
    assert set(data.ids("train")) | set(data.ids("val")) == {f"tile{i}" for i in range(2, 8)}


def test_nuclei_dataset(nuclei_path):
    data = load_data(nuclei_path)
    assert data.num_classes == 2
    assert data.ids("test") == ["r0c3", "r1c3", "r2c3", "r3c3"]
    assert len(data.ids("train")) + len(data.ids("val")) == 12
    image, mask = data.load("r0c0")
    assert image.shape == (128, 128, 1) and mask.shape == (128, 128)


def test_rgb_jpeg_and_tiff(tmp_path):
    root = tmp_path / "mixed"
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "images" / "a.jpg")
    tifffile.imwrite(root / "images" / "b.tif", rng.integers(0, 65535, (16, 16), dtype=np.uint16))
    write_png(root / "masks" / "a.png", np.eye(16, dtype=np.uint8) * 2)
    tifffile.imwrite(root / "masks" / "b.tif", np.ones((16, 16), dtype=np.uint8))
    data = folder_dataset(root, val_fraction=0.0, test_fraction=0.0)
    assert data.num_classes == 3
    assert data.load("a")[0].shape == (16, 16, 3)
    assert data.load("b")[0].shape == (16, 16, 1)


def test_ignore_index(make_folder_dataset):
    root = make_folder_dataset(count=4)
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:4] = 255
    mask[10:20, 10:20] = 1
    write_png(root / "masks" / "tile0.png", mask)
    data = folder_dataset(root, ignore_index=255)
    assert data.num_classes == 2
    assert (data.load("tile0")[1] == 255).sum() == 4 * 32


def test_image_without_mask_is_named(make_folder_dataset):
    root = make_folder_dataset(count=3)
    (root / "masks" / "tile1.png").unlink()
    with pytest.raises(DataError, match=r"tile1\.png"):
        folder_dataset(root)


def test_mask_without_image_is_named(make_folder_dataset):
    root = make_folder_dataset(count=3)
    write_png(root / "masks" / "orphan.png", np.zeros((32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="orphan"):
        folder_dataset(root)


def test_size_mismatch_is_named(make_folder_dataset):
    root = make_folder_dataset(count=3)
    write_png(root / "masks" / "tile2.png", np.zeros((16, 32), dtype=np.uint8))
    data = folder_dataset(root)
    with pytest.raises(DataError, match=r"tile2\.png.*same size"):
        data.load("tile2")


def test_class_index_beyond_num_classes_is_named(make_folder_dataset):
    root = make_folder_dataset(count=3)
    write_png(root / "masks" / "tile0.png", np.full((32, 32), 3, dtype=np.uint8))
    data = folder_dataset(root, num_classes=2)
    with pytest.raises(DataError, match=r"tile0\.png.*class index 3"):
        data.load("tile0")


def test_unreadable_file_is_named(make_folder_dataset):
    root = make_folder_dataset(count=3)
    (root / "images" / "tile1.png").write_bytes(b"this is no png")
    with pytest.raises(DataError, match=r"tile1\.png"):
        folder_dataset(root, num_classes=2).load("tile1")


def test_binary_masks_saved_as_0_255_read_as_0_1_with_a_note(make_folder_dataset):
    root = make_folder_dataset(count=2)
    for index in range(2):
        write_png(root / "masks" / f"tile{index}.png", (np.eye(32) * 255).astype(np.uint8))
    data = folder_dataset(root)
    assert data.num_classes == 2 and np.array_equal(data.load("tile0")[1], np.eye(32, dtype=np.int32))
    assert any("255 as class 1" in note for note in data.notes)


@pytest.mark.parametrize(
    "line,message",
    [("validation tile0", "line 1"), ("train nosuchtile", "nosuchtile")],
)
def test_bad_split_file(make_folder_dataset, line, message):
    root = make_folder_dataset(count=2, split_lines=[line])
    with pytest.raises(DataError, match=message):
        folder_dataset(root)


def test_missing_folders(tmp_path):
    with pytest.raises(DataError, match="images/ and masks/"):
        folder_dataset(tmp_path)
    with pytest.raises(DataError, match="No dataset"):
        load_data(tmp_path / "nothing-here")


def test_unknown_split(make_folder_dataset):
    data = folder_dataset(make_folder_dataset(count=4))
    with pytest.raises(DataError, match="no split 'holdout'"):
        data.ids("holdout")
