"""watershed_split: any foreground mask (Otsu's, a network's) split into objects, touching ones apart."""

import numpy as np
import pytest

from segprune.classical import watershed_segment, watershed_split


def test_two_touching_discs_become_two_objects_and_nothing_leaves_the_mask():
    rows, columns = np.mgrid[:40, :60]
    foreground = ((rows - 20) ** 2 + (columns - 18) ** 2 < 12**2) | ((rows - 20) ** 2 + (columns - 40) ** 2 < 12**2)
    labels = watershed_split(foreground)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert not labels[~foreground].any()
    assert labels[20, 18] != labels[20, 40]


def test_an_empty_mask_has_no_objects_and_the_classical_method_is_otsu_then_the_split():
    assert not watershed_split(np.zeros((8, 8), bool)).any()
    image = np.zeros((32, 32, 1), np.float32)
    image[4:14, 4:14] = 1.0
    image[18:28, 16:30] = 1.0
    assert len(np.unique(watershed_segment(image))) == 3
    with pytest.raises(ValueError, match="min_distance"):
        watershed_split(np.ones((4, 4), bool), min_distance=0)
