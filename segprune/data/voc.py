"""The Pascal VOC layout: `JPEGImages/` with palette PNG masks in `SegmentationClass/` and split lists."""

from __future__ import annotations

from pathlib import Path

from segprune.data._imageio import DataError
from segprune.data.dataset import SegmentationDataset
from segprune.data.folder import _files_by_stem, complete_splits, paired_dataset

IMAGES_FOLDER = "JPEGImages"
MASKS_FOLDER = "SegmentationClass"
LISTS_FOLDER = Path("ImageSets") / "Segmentation"
BOUNDARY = 255  # VOC draws a 5-pixel border around objects with this index: pixels no one could label


def is_voc_layout(root: Path) -> bool:
    return voc_root(root) is not None


def voc_root(root: Path) -> Path | None:
    """The folder holding `JPEGImages/` and `SegmentationClass/`: `root` itself, or `root/VOC2012`,
    `root/VOCdevkit/VOC2012` (any year) as the archive unpacks."""
    candidates = [root, *sorted(root.glob("VOC*")), *sorted(root.glob("VOCdevkit/VOC*"))]
    for candidate in candidates:
        if (candidate / IMAGES_FOLDER).is_dir() and (candidate / MASKS_FOLDER).is_dir():
            return candidate
    return None


def voc_dataset(
    root: str | Path,
    num_classes: int | None = None,
    ignore_index: int | None = BOUNDARY,
    val_fraction: float = 0.1,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> SegmentationDataset:
    """Reads Pascal VOC segmentation (2007-2012) or a dataset laid out like it.

    Masks are palette PNGs: their palette indices are the classes (0 background, 1..20 for VOC) and 255
    the object boundary, skipped by losses and metrics (`ignore_index=255`, the default; the layout names
    the convention, so nothing is asked). Only images with a mask are used. `ImageSets/Segmentation/train.txt`
    lists the training images and `val.txt` the ones VOC results are reported on, which become the test
    split; validation (for early stopping) is carved from train by `val_fraction`. Without the lists, a
    seeded split by `val_fraction` and `test_fraction` is made.

    Args:
        root: The folder with `JPEGImages/` and `SegmentationClass/`, or one above it (`VOCdevkit/`).
        num_classes: Classes including background (21 for VOC); inferred from the masks when None.
        ignore_index: The boundary index to skip (255), or None to make it a class of its own.
        val_fraction: Share of the training images held out for validation.
        test_fraction: Share held out for testing when there are no split lists.
        seed: Seed of the carved splits.

    Example:
        >>> data = voc_dataset("VOCdevkit/VOC2012", num_classes=21)
        >>> data.ignore_index, len(data.ids("test"))
        (255, 1449)
    """
    given_root = Path(root)
    found = voc_root(given_root)
    if found is None:
        raise DataError(f"{str(given_root)!r} has no {IMAGES_FOLDER}/ and {MASKS_FOLDER}/ folders, the Pascal VOC layout.")
    masks = _files_by_stem(found / MASKS_FOLDER, "masks")
    images = {stem: path for stem, path in _files_by_stem(found / IMAGES_FOLDER, "images").items() if stem in masks}
    missing = sorted(set(masks) - set(images))
    if missing:
        raise DataError(f"{len(missing)} mask(s) in {str(found / MASKS_FOLDER)!r} have no image in {IMAGES_FOLDER}/, e.g. {missing[0]!r}.")
    splits = complete_splits(_listed_splits(found, sorted(masks)), val_fraction, test_fraction, seed)
    return paired_dataset(found.name, images, masks, splits, num_classes, ignore_index)


def _listed_splits(root: Path, stems: list[str]) -> dict[str, list[str]]:
    """train.txt as train and val.txt as test, keeping the listed images that have a mask; all as train without lists."""
    lists = {"train": root / LISTS_FOLDER / "train.txt", "test": root / LISTS_FOLDER / "val.txt"}
    if not lists["train"].exists():
        return {"train": stems}
    known = set(stems)
    splits: dict[str, list[str]] = {}
    for split, path in lists.items():
        if path.exists():
            listed = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
            unknown = [stem for stem in listed if stem not in known]
            if unknown:
                raise DataError(f"{str(path)!r} lists {len(unknown)} image(s) with no mask in {MASKS_FOLDER}/, e.g. {unknown[0]!r}.")
            splits[split] = sorted(listed)
    return splits
