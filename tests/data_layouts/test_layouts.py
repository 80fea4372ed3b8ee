"""The layouts users keep their data in, each written small by the test: suffixed masks, split folders,
Pascal VOC, Cityscapes, COCO JSON; and the value conventions (0/255, an ignore label) recognised, not guessed."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from segprune.data import DataError, DataSource, SegmentationDataset, load_data
from segprune.data.cityscapes import TRAIN_IDS
from segprune.data.instances import load_instance_data
from tests.conftest import write_png

SIZE = 16


def _rgb_jpeg(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)


def _mask(values, seed: int = 0) -> np.ndarray:
    """A 16x16 uint8 mask holding each of `values` (in stripes, so every value occurs)."""
    rows = np.arange(SIZE)[:, None].repeat(SIZE, axis=1)
    return np.asarray(values, dtype=np.uint8)[(rows + seed) % len(values)]


def _new_user_data(root, count: int = 6, values=(0, 255), pattern: str = "{stem}_mask.png"):
    """RGB JPEGs `img_001.jpg` with masks `img_001_mask.png`, as public datasets ship them."""
    for index in range(count):
        stem = f"img_{index:03d}"
        _rgb_jpeg(root / "images" / f"{stem}.jpg", index)
        write_png(root / "masks" / pattern.format(stem=stem), _mask(values, index))
    return root


def test_suffixed_0_255_masks_read_as_binary_with_notes(tmp_path):
    data = load_data(_new_user_data(tmp_path / "mydata"))
    assert data.num_classes == 2 and data.ignore_index is None and data.image_channels == 3
    image, mask = data.load("img_000")
    assert image.shape == (SIZE, SIZE, 3) and set(np.unique(mask)) == {0, 1}
    assert any("'_mask'" in note for note in data.notes) and any("0 and 255" in note for note in data.notes)


def test_mask_pattern_named(tmp_path):
    root = _new_user_data(tmp_path / "mydata", values=(0, 1), pattern="{stem}-gt.png")
    with pytest.raises(DataError, match="--mask-pattern"):
        load_data(root)
    data = load_data(root, mask_pattern="{stem}-gt.png")
    assert data.num_classes == 2 and data.load("img_001")[1].max() == 1
    assert load_data(root, mask_pattern="{stem}-gt").num_classes == 2
    with pytest.raises(DataError, match="holding \\{stem\\}"):
        load_data(root, mask_pattern="masks/mask.png")


def test_ignore_label_stops_and_asks_naming_the_values(tmp_path):
    root = _new_user_data(tmp_path / "voc_like", values=(0, 1, 2, 255))
    with pytest.raises(DataError, match="0, 1, 2, 255.*--ignore-index 255") as refused:
        load_data(root)
    assert "256" not in str(refused.value)
    with pytest.raises(DataError, match="255 is no class of 3.*--ignore-index 255"):
        load_data(root, num_classes=3)
    data = load_data(root, ignore_index=255)
    assert data.num_classes == 3 and (data.load("img_000")[1] == 255).any()


def test_grey_levels_are_refused_not_made_classes(tmp_path):
    with pytest.raises(DataError, match="grey levels"):
        load_data(_new_user_data(tmp_path / "grey", values=(0, 128)))


def test_split_folders_give_the_split(tmp_path):
    root = tmp_path / "kaggle"
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        for index in range(count):
            _rgb_jpeg(root / split / f"{index}.jpg", index)
            write_png(root / f"{split}_masks" / f"{index}_mask.png", _mask((0, 1), index))
    data = load_data(root)
    assert data.ids("train") == [f"train/{index}" for index in range(4)]
    assert data.ids("val") == ["val/0", "val/1"] and data.ids("test") == ["test/0", "test/1"]
    assert data.load("test/1")[1].max() == 1


def test_split_subfolders_carve_the_missing_splits(tmp_path):
    root = tmp_path / "nested"
    for index in range(8):
        write_png(root / "images" / "train" / f"{index}.png", np.full((SIZE, SIZE), 30 * index, np.uint8))
        write_png(root / "masks" / "train" / f"{index}.png", _mask((0, 2), index))
    data = load_data(root, val_fraction=0.25, test_fraction=0.25)
    assert data.num_classes == 3 and len(data.ids("val")) == 2 and len(data.ids("test")) == 2
    assert sorted(data.ids("train") + data.ids("val") + data.ids("test")) == [f"train/{index}" for index in range(8)]


def test_pascal_voc_palette_masks_boundary_and_lists(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    stems = [f"2007_{index:06d}" for index in range(6)]
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192]
    for index, stem in enumerate(stems):
        _rgb_jpeg(root / "JPEGImages" / f"{stem}.jpg", index)
        mask = Image.fromarray(_mask((0, 1, 2, 255), index), mode="P")
        mask.putpalette(palette)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        mask.save(root / "SegmentationClass" / f"{stem}.png")
    _rgb_jpeg(root / "JPEGImages" / "2008_000001.jpg", 9)  # detection-only image: no mask, not used
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(stems[:4]) + "\n")
    (lists / "val.txt").write_text("\n".join(stems[4:]) + "\n")
    data = load_data(tmp_path / "VOCdevkit")
    assert data.num_classes == 3 and data.ignore_index == 255
    assert data.ids("test") == stems[4:] and len(data.ids("train")) + len(data.ids("val")) == 4
    assert set(np.unique(data.load(stems[0])[1])) == {0, 1, 2, 255}  # indices, not the palette's colours


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    root = tmp_path / "cityscapes"
    label_ids = np.array([7, 26, 0, 24], dtype=np.uint8)  # road, car, unlabeled, person
    for split, count in (("train", 3), ("val", 1)):
        for index in range(count):
            stem = f"aachen_000000_{index:06d}"
            write_png(root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png", np.full((SIZE, SIZE, 3), 60, np.uint8))
            write_png(root / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelIds.png", _mask(label_ids, index))
    data = load_data(root)
    assert data.num_classes == 19 and data.ignore_index == 255
    assert data.ids("test") == ["aachen/aachen_000000_000000"] and len(data.ids("train")) + len(data.ids("val")) == 3
    assert set(np.unique(data.load("aachen/aachen_000000_000001")[1])) == {TRAIN_IDS[7], TRAIN_IDS[26], TRAIN_IDS[24], 255}
    with pytest.raises(DataError, match="does not take mask_pattern"):
        load_data(root, mask_pattern="{stem}_mask.png")


def test_coco_json_instances(tmp_path):
    root = tmp_path / "cells"
    images, annotations = [], []
    for index in range(4):
        _rgb_jpeg(root / "images" / f"cell{index}.jpg", index)
        images.append({"id": index + 1, "file_name": f"cell{index}.jpg", "height": SIZE, "width": SIZE})
        annotations.append({"id": 2 * index + 1, "image_id": index + 1, "category_id": 7, "iscrowd": 0, "area": 16.0,
                            "bbox": [2, 3, 4, 4], "segmentation": [[2, 3, 6, 3, 6, 7, 2, 7]]})
        annotations.append({"id": 2 * index + 2, "image_id": index + 1, "category_id": 9, "iscrowd": 0, "area": 9.0,
                            "bbox": [10, 10, 3, 3], "segmentation": [[10, 10, 13, 10, 13, 13, 10, 13]]})
    categories = [{"id": 7, "name": "nucleus"}, {"id": 9, "name": "debris"}]
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    data = load_instance_data(root, test_fraction=0.25)
    assert data.num_classes == 3 and len(data.ids("test")) == 1
    image, instances = data.load("cell0")
    assert image.shape == (SIZE, SIZE, 3) and sorted(instances.class_ids.tolist()) == [1, 2]
    first = int(np.flatnonzero(instances.class_ids == 1)[0])
    assert instances.boxes[first].tolist() == [3.0, 2.0, 7.0, 6.0] and instances.masks[first].sum() == 16


def test_own_reader_uint8_images_are_scaled_with_a_note_and_0_255_floats_refused():
    image = np.full((SIZE, SIZE, 3), 200, np.uint8)
    mask = _mask((0, 1))
    data = SegmentationDataset("mine", 2, 3, {"train": ["a"], "test": ["b"]}, reader=lambda sample_id: (image, mask))
    with pytest.warns(UserWarning, match="scaled to \\[0, 1\\]"):
        loaded, _ = data.load("a")
    assert loaded.dtype == np.float32 and np.allclose(loaded, 200 / 255) and len(data.notes) == 1
    floats = SegmentationDataset("mine", 2, 3, {"train": ["a"]}, reader=lambda sample_id: (image.astype(np.float32), mask))
    with pytest.raises(DataError, match="\\[200, 200\\].*divide by 255"):
        floats.load("a")
    wrong_class = SegmentationDataset("mine", 2, 3, {"train": ["a"]}, reader=lambda sample_id: (image / 255.0, mask * 3))
    with pytest.raises(DataError, match="class index 3"):
        wrong_class.load("a")


def test_data_source_carries_the_options_to_worker_processes(tmp_path):
    root = _new_user_data(tmp_path / "voc_like", values=(0, 1, 2, 255))
    source = pickle.loads(pickle.dumps(DataSource(str(root), (("ignore_index", 255),))))
    assert load_data(source).num_classes == 3
    with pytest.raises(DataError, match="does not take mask_pattern"):
        load_data("synthetic", mask_pattern="{stem}_mask.png")


def test_masks_beside_their_images_in_one_folder(tmp_path):
    root = tmp_path / "flat"
    for index in range(5):
        _rgb_jpeg(root / f"case{index}.jpg", index)
        write_png(root / f"case{index}_seg.png", _mask((0, 255), index))
    data = load_data(root)
    assert sorted(data.ids("train") + data.ids("val") + data.ids("test")) == [f"case{index}" for index in range(5)]
    assert data.num_classes == 2 and data.load("case3")[1].max() == 1


def test_instance_class_masks_saved_as_0_255_are_one_class(tmp_path):
    root = tmp_path / "cells"
    for index in range(3):
        labels = np.zeros((SIZE, SIZE), np.uint16)
        labels[2:6, 2:6], labels[9:13, 9:13] = 1, 2
        _rgb_jpeg(root / "images" / f"c{index}.jpg", index)
        write_png(root / "instances" / f"c{index}.png", labels)
        write_png(root / "masks" / f"c{index}.png", (labels > 0).astype(np.uint8) * 255)
    data = load_instance_data(root)
    assert data.num_classes == 2 and data.load("c0")[1].class_ids.tolist() == [1, 1]
