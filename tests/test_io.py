"""Atomic writes: a failure leaves the existing file untouched and no temporary file behind."""

import pytest

from segprune._io import atomic_path, save_model
from segprune.models import unet


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_save_model_requires_keras_suffix(tmp_path):
    with pytest.raises(ValueError, match=".keras"):
        save_model(unet(base_filters=4, depth=1), tmp_path / "model.h5")
