"""Instance datasets: label images into boxes and masks, classes from masks/, consistent augmentation, bad files named."""

import numpy as np
import pytest
import tifffile

from segprune.data import DataError
from segprune.data.instances import augment_instances, instance_dataset, instances_from_labels, instances_from_masks
from tests.conftest import write_png


def _labels() -> np.ndarray:
    labels = np.zeros((16, 16), dtype=np.uint16)
    labels[2:5, 3:7] = 7  # rows 2..4, cols 3..6
    labels[10:16, 0:2] = 300  # touches the bottom and left borders
    return labels


def _write_dataset(root, labels=None, class_mask=None, image_size=16):
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        write_png(root / "images" / f"{stem}.png", rng.integers(0, 255, (image_size, image_size), dtype=np.uint8))
        write_png(root / "instances" / f"{stem}.png", _labels() if labels is None else labels)
        if class_mask is not None:
            write_png(root / "masks" / f"{stem}.png", class_mask)
    (root / "split.txt").write_text("train a\ntest b\n")
    return root


def test_label_image_gives_tight_boxes_masks_and_one_class():
    instances = instances_from_labels(_labels())
    assert len(instances) == 2
    np.testing.assert_array_equal(instances.boxes, [[2, 3, 5, 7], [10, 0, 16, 2]])
    assert instances.masks.shape == (2, 16, 16) and instances.masks.dtype == bool
    assert instances.masks[0].sum() == 12 and instances.masks[1].sum() == 12
    np.testing.assert_array_equal(instances.class_ids, [1, 1])


def test_empty_label_image_gives_no_instances():
    instances = instances_from_labels(np.zeros((8, 8), np.uint16))
    assert len(instances) == 0 and instances.boxes.shape == (0, 4) and instances.masks.shape == (0, 8, 8)


def test_each_instance_takes_its_majority_class():
    class_mask = np.zeros((16, 16), np.uint8)
    class_mask[2:5, 3:7] = 2
    class_mask[2, 3] = 1  # a minority pixel of another class
    class_mask[10:16, 0:2] = 1
    instances = instances_from_labels(_labels(), class_mask)
    np.testing.assert_array_equal(instances.class_ids, [2, 1])


def test_folder_with_instances_and_masks(tmp_path):
    class_mask = np.zeros((16, 16), np.uint8)
    class_mask[_labels() == 7] = 2
    class_mask[_labels() == 300] = 1
    data = instance_dataset(_write_dataset(tmp_path / "d", class_mask=class_mask))
    assert data.num_classes == 3
    assert data.ids("test") == ["b"]
    image, instances = data.load("a")
    assert image.shape == (16, 16, 1)
    np.testing.assert_array_equal(instances.class_ids, [2, 1])


def test_nuclei_instances(nuclei_path):
    data = instance_dataset(nuclei_path)
    assert data.num_classes == 2 and len(data.ids("train")) == 12 and len(data.ids("test")) == 4
    image, instances = data.load("r0c0")
    assert image.shape == (128, 128, 1)
    assert len(instances) == 12
    sizes = np.maximum(instances.boxes[:, 2] - instances.boxes[:, 0], instances.boxes[:, 3] - instances.boxes[:, 1])
    assert 3 <= sizes.min() and sizes.max() <= 60


def test_augmentation_keeps_masks_boxes_and_image_aligned():
    rng = np.random.default_rng(1)
    labels = _labels()
    image = (labels > 0).astype(np.float32)[..., None] * 0.5 + 0.25
    instances = instances_from_labels(labels)
    seen_changes = 0
    for _ in range(8):
        new_image, moved = augment_instances(image, instances, rng)
        assert len(moved) == 2 and new_image.shape == image.shape
        union = moved.masks.any(axis=0)
        # The bright pixels (objects) are exactly where the moved masks are.
        assert new_image[..., 0][union].min() > new_image[..., 0][~union].max()
        assert np.array_equal(instances_from_masks(moved.masks, moved.class_ids).boxes, moved.boxes)
        seen_changes += not np.array_equal(moved.boxes, instances.boxes)
    assert seen_changes > 0


def test_instance_image_of_another_size_is_named(tmp_path):
    root = _write_dataset(tmp_path / "d")
    write_png(root / "instances" / "a.png", np.zeros((8, 16), np.uint16))
    with pytest.raises(DataError, match=r"instances/a\.png.*8x16.*16x16"):
        instance_dataset(root).load("a")


def test_float_instance_image_is_named(tmp_path):
    root = _write_dataset(tmp_path / "d")
    (root / "instances" / "a.png").unlink()
    tifffile.imwrite(root / "instances" / "a.tif", _labels().astype(np.float32))
    with pytest.raises(DataError, match=r"a\.tif.*float32.*integers"):
        instance_dataset(root).load("a")


def test_negative_ids_are_named(tmp_path):
    root = _write_dataset(tmp_path / "d")
    (root / "instances" / "a.png").unlink()
    labels = _labels().astype(np.int32)
    labels[0, 0] = -3
    tifffile.imwrite(root / "instances" / "a.tif", labels)
    with pytest.raises(DataError, match=r"a\.tif.*negative id -3"):
        instance_dataset(root).load("a")


def test_folder_without_instances_says_so(tmp_path):
    root = _write_dataset(tmp_path / "d")
    for path in (root / "instances").iterdir():
        path.unlink()
    (root / "instances").rmdir()
    with pytest.raises(DataError, match=r"no instances/ folder"):
        instance_dataset(root)
