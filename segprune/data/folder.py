"""A folder of `images/` and `masks/` with matching file stems, and an optional `split.txt`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segprune.data._imageio import IMAGE_SUFFIXES, DataError, read_image, read_mask
from segprune.data.dataset import SPLITS, SegmentationDataset, seeded_split

SPLIT_FILE = "split.txt"


def folder_dataset(
    root: str | Path,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> SegmentationDataset:
    """Reads a dataset laid out as `root/images/<stem>.<ext>` and `root/masks/<stem>.<ext>`.

    Images may be PNG, JPEG, TIFF or BMP, grayscale or RGB; masks hold one class index per pixel.
    `root/split.txt` (lines `train|val|test <stem>`) fixes the split; a split file without `val` lines
    gets its validation set carved from `train` by `val_fraction`. Without a split file, a seeded split
    by `val_fraction` and `test_fraction` is made.

    Args:
        root: The dataset folder.
        num_classes: Classes including background; inferred from the masks when None.
        ignore_index: Mask value that losses and metrics skip (for example 255), or None.
        val_fraction: Share of the training images held out for validation.
        test_fraction: Share held out for testing when there is no split file.
        seed: Seed of the split.

    Example:
        >>> data = folder_dataset("../shared/datasets/nuclei-dsb2018")
        >>> data.num_classes, len(data.ids("test"))
        (2, 4)
    """
    root = Path(root)
    images = _files_by_stem(root / "images", "images")
    masks = _files_by_stem(root / "masks", "masks")
    _check_pairs(images, masks, root)
    splits = _read_or_make_split(root, sorted(images), val_fraction, test_fraction, seed)

    if num_classes is None:
        num_classes = _infer_num_classes(masks, ignore_index, root)
    first_image = read_image(images[splits["train"][0] if splits["train"] else sorted(images)[0]])

    dataset: SegmentationDataset

    def reader(stem: str) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(images[stem])
        mask = read_mask(masks[stem])
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"Image {str(images[stem])!r} is {image.shape[0]}x{image.shape[1]} but its mask "
                f"{str(masks[stem])!r} is {mask.shape[0]}x{mask.shape[1]}; they must be the same size."
            )
        dataset.check_mask(mask, str(masks[stem]))
        return image, mask

    dataset = SegmentationDataset(
        name=root.name,
        num_classes=num_classes,
        image_channels=first_image.shape[-1],
        splits=splits,
        reader=reader,
        ignore_index=ignore_index,
    )
    return dataset


def _files_by_stem(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(
            f"{str(folder)!r} is not a folder. A folder dataset needs images/ and masks/ side by side, "
            "with one mask per image under the same file stem."
        )
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in files:
            raise DataError(f"Two {role} share the stem {path.stem!r}: {files[path.stem].name} and {path.name}. Keep one.")
        files[path.stem] = path
    if not files:
        raise DataError(f"No {role} in {str(folder)!r}; supported suffixes: {', '.join(IMAGE_SUFFIXES)}.")
    return files


def _check_pairs(images: dict[str, Path], masks: dict[str, Path], root: Path) -> None:
    without_mask = sorted(set(images) - set(masks))
    if without_mask:
        listed = ", ".join(images[stem].name for stem in without_mask[:5])
        raise DataError(
            f"{len(without_mask)} image(s) in {str(root / 'images')!r} have no mask in masks/ with the same stem: "
            f"{listed}{' ...' if len(without_mask) > 5 else ''}. Add the masks or remove the images."
        )
    without_image = sorted(set(masks) - set(images))
    if without_image:
        listed = ", ".join(masks[stem].name for stem in without_image[:5])
        raise DataError(f"Mask(s) without an image in {str(root / 'masks')!r}: {listed}. Add the images or remove the masks.")


def _read_or_make_split(
    root: Path, stems: list[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    split_file = root / SPLIT_FILE
    if not split_file.exists():
        return seeded_split(stems, {"train": 0.0, "val": val_fraction, "test": test_fraction}, seed)
    splits: dict[str, list[str]] = {name: [] for name in SPLITS}
    known = set(stems)
    for number, line in enumerate(split_file.read_text().splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or words[0] not in SPLITS:
            raise DataError(f"{str(split_file)!r} line {number}: expected 'train|val|test <stem>', got {line!r}.")
        if words[1] not in known:
            raise DataError(f"{str(split_file)!r} line {number}: no image with stem {words[1]!r} in images/.")
        splits[words[0]].append(words[1])
    unlisted = sorted(known - {stem for ids in splits.values() for stem in ids})
    if unlisted:
        raise DataError(f"{str(split_file)!r} does not list {len(unlisted)} image(s), e.g. {unlisted[0]!r}; give each a split.")
    if not splits["val"] and val_fraction > 0:
        carved = seeded_split(splits["train"], {"train": 0.0, "val": val_fraction}, seed)
        splits["train"], splits["val"] = carved["train"], carved["val"]
    return splits


def _infer_num_classes(masks: dict[str, Path], ignore_index: int | None, root: Path) -> int:
    values: set[int] = set()
    for path in masks.values():
        values.update(int(v) for v in np.unique(read_mask(path)))
    if ignore_index is not None:
        values.discard(ignore_index)
    if not values:
        raise DataError(f"Every mask pixel in {str(root)!r} is the ignore index; nothing to learn from.")
    if min(values) < 0:
        raise DataError(f"Masks in {str(root)!r} hold negative class index {min(values)}; class indices start at 0.")
    if values <= {0, 255} and 255 in values:
        raise DataError(
            f"Masks in {str(root)!r} hold only 0 and 255: binary masks saved as 0/255. Store the foreground as 1, "
            "or pass ignore_index=255 if 255 marks pixels to skip."
        )
    return max(2, max(values) + 1)
