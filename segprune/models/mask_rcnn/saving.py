"""Saving a Mask R-CNN as one `.keras` file and loading it back, refusing files that hold something else."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from segprune._io import save_model
from segprune.models.checks import check_finite_weights
from segprune.models.loading import ModelFileError
from segprune.models.mask_rcnn.model import MaskRCNN


def save_mask_rcnn(model: MaskRCNN, path: str | Path) -> Path:
    """Saves the detector (trunk, heads and config) atomically; it reloads with `load_mask_rcnn`.

    Example:
        >>> save_mask_rcnn(model, "runs/mask_rcnn.keras")
    """
    if not isinstance(model, MaskRCNN):
        raise TypeError(f"save_mask_rcnn saves a MaskRCNN, got {type(model).__name__}; save other models with segprune.save_model.")
    return save_model(model, path)


def is_mask_rcnn_file(path: str | Path) -> bool:
    """Whether a `.keras` file holds a Mask R-CNN, read from its config without building anything.

    Example:
        >>> is_mask_rcnn_file("runs/mask_rcnn.keras")
        True
    """
    path = Path(path)
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return False
    return config.get("class_name") == MaskRCNN.__name__ and config.get("registered_name") in (None, "segprune>MaskRCNN")


def load_mask_rcnn(path: str | Path) -> MaskRCNN:
    """Loads a Mask R-CNN saved by `save_mask_rcnn` (plain `keras.saving.load_model` works too once this module is imported).

    Raises:
        FileNotFoundError: Nothing exists at `path`.
        ModelFileError: The file cannot be read, or holds another kind of model.

    Example:
        >>> model = load_mask_rcnn("runs/mask_rcnn.keras")
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No Mask R-CNN file at {str(path)!r}. Train one with segprune.models.mask_rcnn.train_mask_rcnn.")
    if path.suffix != ".keras":
        raise ModelFileError(f"{str(path)!r} is not a .keras file; a Mask R-CNN is saved with save_mask_rcnn(model, 'name.keras').")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for unreadable or foreign files
        raise ModelFileError(f"Cannot load {str(path)!r} as a Mask R-CNN: {error}") from error
    if not isinstance(model, MaskRCNN):
        raise ModelFileError(
            f"{str(path)!r} holds a {type(model).__name__} named {model.name!r}, not a Mask R-CNN; pass a file written by "
            "`segprune train --model mask-rcnn` or save_mask_rcnn."
        )
    check_finite_weights(model, source=str(path))
    return model
