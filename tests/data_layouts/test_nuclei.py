"""The built-in nuclei tiles: loadable by name, the same data as the shared copy, and packaged in the wheel."""

import fnmatch
import tomllib
from pathlib import Path

import numpy as np
import pytest

from segprune.data import NUCLEI_ROOT, DataError, folder_dataset, load_data

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_load_data_nuclei_is_the_binary_grayscale_tile_set_with_its_fixed_split():
    data = load_data("nuclei")
    assert data.name == "nuclei"
    assert data.num_classes == 2 and data.image_channels == 1
    assert data.ids("test") == ["r0c3", "r1c3", "r2c3", "r3c3"]
    assert len(data.ids("train")) + len(data.ids("val")) == 12
    image, mask = data.load("r1c3")
    assert image.shape == (128, 128, 1) and mask.shape == (128, 128)
    assert 0.05 < float(np.mean(mask == 1)) < 0.5


def test_built_in_tiles_equal_the_shared_copy():
    from tests.conftest import SHARED_NUCLEI

    if not (SHARED_NUCLEI / "images").is_dir():
        pytest.skip(f"no shared copy of the nuclei tiles at {SHARED_NUCLEI} to compare with")
    built_in, shared = load_data("nuclei"), folder_dataset(SHARED_NUCLEI)
    assert built_in.splits == shared.splits
    for sample_id in built_in.ids("test") + built_in.ids("val"):
        for ours, theirs in zip(built_in.load(sample_id), shared.load(sample_id)):
            np.testing.assert_array_equal(ours, theirs)


def test_synthetic_stays_the_multi_class_option():
    assert load_data("synthetic").num_classes > 2


def test_unknown_name_lists_the_built_in_datasets():
    with pytest.raises(DataError, match="nuclei, brain, synthetic"):
        load_data("nuclie")


def test_package_data_globs_cover_every_shipped_file():
    # What setuptools puts in the wheel: the globs of [tool.setuptools.package-data], relative to the package.
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["segprune.data"]
    package = REPO_ROOT / "segprune" / "data"
    shipped = [path.relative_to(package).as_posix() for path in NUCLEI_ROOT.rglob("*") if path.is_file()]
    assert len(shipped) == 16 * 3 + 2, shipped
    uncovered = [name for name in shipped if not any(fnmatch.fnmatch(name, pattern) for pattern in globs)]
    assert not uncovered, f"not packaged by {globs}: {uncovered}"
    assert "CC0" in (NUCLEI_ROOT / "README.md").read_text()
