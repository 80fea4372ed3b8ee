"""The Cityscapes layout: `leftImg8bit/<split>/<city>/` images with `gtFine/<split>/<city>/` label-ID masks.

Cityscapes masks hold label IDs (0..33, and -1 for licence plates) of which 19 are trained on; the standard
mapping below (from `cityscapesscripts/helpers/labels.py`) turns them into train IDs 0..18 and every other
label into 255, which losses and metrics skip. Give a mapping of your own with `label_map=` (label ID ->
class index; unlisted IDs are skipped), for example to train on fewer classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from segprune.data._imageio import DataError, read_mask
from segprune.data.dataset import SegmentationDataset
from segprune.data.folder import complete_splits, paired_dataset

IMAGES_FOLDER = "leftImg8bit"
MASKS_FOLDER = "gtFine"
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"
IGNORE_INDEX = 255
# Label ID -> train ID for the 19 evaluated classes (road, sidewalk, building, wall, fence, pole, traffic light,
# traffic sign, vegetation, terrain, sky, person, rider, car, truck, bus, train, motorcycle, bicycle).
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def is_cityscapes_layout(root: Path) -> bool:
    return (root / IMAGES_FOLDER).is_dir() and (root / MASKS_FOLDER).is_dir()


def cityscapes_dataset(
    root: str | Path,
    label_map: Mapping[int, int] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> SegmentationDataset:
    """Reads Cityscapes' fine annotations, label IDs mapped to train IDs (19 classes, 255 skipped).

    `train` is the training split, with validation (for early stopping) carved from it by `val_fraction`;
    Cityscapes' `val` (the images its results are reported on) is the test split. Its `test` masks are
    withheld by the benchmark and are not read.

    Args:
        root: The folder holding `leftImg8bit/` and `gtFine/`.
        label_map: Label ID -> class index; None applies the standard mapping (`TRAIN_IDS`). IDs it does not
            list become 255 and are skipped.
        val_fraction: Share of the training images held out for validation.
        seed: Seed of the carved validation split.

    Example:
        >>> data = cityscapes_dataset("cityscapes")
        >>> data.num_classes, data.ignore_index
        (19, 255)
        >>> roads = cityscapes_dataset("cityscapes", label_map={7: 1, 8: 1})  # road and sidewalk against the rest
    """
    root = Path(root)
    if not is_cityscapes_layout(root):
        raise DataError(f"{str(root)!r} has no {IMAGES_FOLDER}/ and {MASKS_FOLDER}/ folders, the Cityscapes layout.")
    mapping = dict(TRAIN_IDS if label_map is None else label_map)
    classes = set(mapping.values()) - {IGNORE_INDEX}
    if not classes or min(classes) < 0 or max(classes) > 254:
        raise DataError(f"label_map must map label IDs to class indices 0..254 (or 255 to skip), got {sorted(classes)[:5]}.")
    # label IDs are 8-bit; -1 (licence plates) is stored as 255 in the PNGs
    lookup = np.full(256, IGNORE_INDEX, dtype=np.int32)
    for label_id, class_index in mapping.items():
        lookup[int(label_id) % 256] = class_index

    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    given: dict[str, list[str]] = {}
    for folder, split in (("train", "train"), ("val", "test")):
        pairs = _pairs(root, folder)
        for sample_id, (image, mask) in pairs.items():
            images[sample_id], masks[sample_id] = image, mask
        if pairs:
            given[split] = sorted(pairs)
    splits = complete_splits(given, val_fraction, 0.0, seed)

    def read_train_ids(path: Path) -> np.ndarray:
        return lookup[read_mask(path) % 256]

    return paired_dataset(root.name, images, masks, splits, max(classes) + 1, IGNORE_INDEX, mask_reader=read_train_ids)


def _pairs(root: Path, split: str) -> dict[str, tuple[Path, Path]]:
    """Sample id (`city/city_000000_000019`) -> (image, label-ID mask) of one split folder."""
    pairs: dict[str, tuple[Path, Path]] = {}
    for image in sorted((root / IMAGES_FOLDER / split).glob(f"*/*{IMAGE_SUFFIX}")):
        stem = image.name[: -len(IMAGE_SUFFIX)]
        mask = root / MASKS_FOLDER / split / image.parent.name / f"{stem}{MASK_SUFFIX}"
        if not mask.exists():
            raise DataError(f"Image {str(image)!r} has no label-ID mask {str(mask)!r}; restore gtFine/ from gtFine_trainvaltest.zip.")
        pairs[f"{image.parent.name}/{stem}"] = (image, mask)
    return pairs
