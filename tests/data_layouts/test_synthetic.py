"""The built-in synthetic dataset: seeded, several classes, not trivially separable by colour."""

import numpy as np
import pytest

from segprune.data import load_data, synthetic_dataset


def test_deterministic_and_order_independent():
    first = synthetic_dataset(num_train=4, num_val=1, num_test=1, image_size=48, seed=5)
    second = synthetic_dataset(num_train=4, num_val=1, num_test=1, image_size=48, seed=5)
    later = first.load("train-00003")
    earlier = second.load("train-00000")
    np.testing.assert_array_equal(second.load("train-00003")[0], later[0])
    assert not np.array_equal(earlier[1], later[1])
    other_seed = synthetic_dataset(num_train=4, num_val=1, num_test=1, image_size=48, seed=6)
    assert not np.array_equal(other_seed.load("train-00003")[0], later[0])


def test_shapes_classes_and_value_range():
    data = synthetic_dataset(num_train=24, num_val=2, num_test=2, image_size=64, channels=1)
    classes = set()
    for _, image, mask in data.samples("train"):
        assert image.shape == (64, 64, 1) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        classes |= set(np.unique(mask).tolist())
    assert classes == {0, 1, 2, 3}
    assert data.num_classes == 4


def test_class_colours_overlap():
    """Mean intensity alone must not separate the classes, or the task would be trivial."""
    data = synthetic_dataset(num_train=40, num_val=0, num_test=0, image_size=64, channels=1)
    means = {c: [] for c in range(4)}
    for _, image, mask in data.samples("train"):
        for c in range(4):
            if (mask == c).any():
                means[c].append(float(image[..., 0][mask == c].mean()))
    ranges = [(min(v), max(v)) for v in means.values()]
    assert max(low for low, _ in ranges) < min(high for _, high in ranges)


def test_default_source_is_synthetic():
    assert load_data("synthetic").name == "synthetic"


def test_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        synthetic_dataset(channels=2)
    with pytest.raises(ValueError, match="image_size"):
        synthetic_dataset(image_size=8)
