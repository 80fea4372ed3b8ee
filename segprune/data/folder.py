"""Folder datasets: images and masks paired by file name, in the layouts users keep them.

Layouts, detected in this order (split names: `train`, `val` (or `valid`, `validation`), `test`):

- split folders: `train/` + `train_masks/` (also `train_labels/`, CamVid's `trainannot/`), `train/images/` +
  `train/masks/`, or `images/train/` + `masks/train/`; the folders give the split. A missing validation split
  is carved from `train` by `val_fraction`, a missing test split by `test_fraction`.
- one pair of folders: `images/` + `masks/` (or `labels/`), with an optional `split.txt`.
- one folder holding both, each mask beside its image (`img_001.jpg`, `img_001_mask.png`), with an optional
  `split.txt`.

Masks pair with images by file stem: the same stem (`img_001.jpg` + `img_001.png`), a common suffix found
on its own when it fits every file (`img_001_mask.png`; also `_label`, `_seg`, `_gt`, ...), or a pattern the
user names (`mask_pattern="{stem}_mask.png"`, `--mask-pattern` on the command line).

Mask values are read as class indices, with two conventions recognised rather than guessed at:
- 0/255 masks (binary masks saved for viewing) are read as 0/1, with a note in `dataset.notes`;
- 255 among a few small values (`{0, 1, 2, 255}`: Pascal VOC's and Cityscapes' "ignore") stops with the
  values seen until the user says `ignore_index=255` (`--ignore-index 255`) or gives `num_classes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from segprune.data._imageio import IMAGE_SUFFIXES, DataError, read_image, read_mask
from segprune.data.dataset import SPLITS, SegmentationDataset, seeded_split

SPLIT_FILE = "split.txt"
MASK_FOLDERS = ("masks", "labels")
# Suffixes that tell a mask's stem from its image's, in the order they are tried.
MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_seg", "_segmentation", "_gt", "_annotation", "-mask", "-label", "_m")
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
# How a split folder's masks folder may be named beside it, for a split folder called NAME.
SPLIT_MASK_FOLDERS = ("{name}_masks", "{name}_mask", "{name}_labels", "{name}annot", "{name}_annot", "{name}_gt")
# Other values beside 255 at most this large make 255 look like an ignore label rather than a grey level.
SMALL_CLASS_INDEX = 63

MaskReader = Callable[[Path], np.ndarray]


def folder_dataset(
    root: str | Path,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    mask_pattern: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> SegmentationDataset:
    """Reads a folder of images and masks in any layout of the module docstring.

    Images may be PNG, JPEG, TIFF, BMP or GIF, grayscale or RGB; masks hold one class index per pixel
    (palette PNGs give their palette indices). `root/split.txt` (lines `train|val|test <stem>`) fixes the
    split of an `images/` + `masks/` folder; a split without validation images gets them carved from `train`
    by `val_fraction`. Without either, a seeded split by `val_fraction` and `test_fraction` is made.

    Args:
        root: The dataset folder.
        num_classes: Classes including background; inferred from the masks when None.
        ignore_index: Mask value that losses and metrics skip (for example 255), or None.
        mask_pattern: A mask's file name made from its image's stem, such as `"{stem}_mask.png"` (the suffix
            may be left out: `"{stem}_mask"`); None finds same stems or a common suffix.
        val_fraction: Share of the training images held out for validation.
        test_fraction: Share held out for testing when the layout gives no test split.
        seed: Seed of the split.

    Example:
        >>> data = folder_dataset("mydata", mask_pattern="{stem}_mask.png")  # mydata/images/img_001.jpg, mydata/masks/img_001_mask.png
        >>> data = folder_dataset("voc_like", ignore_index=255)  # masks hold 0, 1, 2 and 255 for "skip"
        >>> data.num_classes
        3
    """
    root = Path(root)
    _check_pattern(mask_pattern)
    split_folders = _split_folders(root)
    notes: list[str] = []
    if split_folders:
        images, masks = {}, {}
        given: dict[str, list[str]] = {}
        for split, (image_folder, mask_folder) in split_folders.items():
            pairs = match_masks(_files_by_stem(image_folder, "images"), _files_by_stem(mask_folder, "masks"), mask_pattern, image_folder, mask_folder, notes)
            # stems may repeat across splits (train/1.png, val/1.png), so ids carry the split
            ids = {f"{split}/{stem}": stem for stem in pairs}
            images.update({sample_id: pairs[stem][0] for sample_id, stem in ids.items()})
            masks.update({sample_id: pairs[stem][1] for sample_id, stem in ids.items()})
            given[split] = sorted(ids)
        splits = complete_splits(given, val_fraction, test_fraction, seed)
    else:
        side_by_side = None if (root / "images").is_dir() else _one_folder(root, mask_pattern)
        if side_by_side is not None:
            image_folder = mask_folder = root
            image_files, mask_files = side_by_side
        else:
            image_folder, mask_folder = root / "images", _mask_folder(root)
            image_files, mask_files = _files_by_stem(image_folder, "images"), _files_by_stem(mask_folder, "masks")
        pairs = match_masks(image_files, mask_files, mask_pattern, image_folder, mask_folder, notes)
        images = {stem: pair[0] for stem, pair in pairs.items()}
        masks = {stem: pair[1] for stem, pair in pairs.items()}
        splits = _read_or_make_split(root, sorted(images), val_fraction, test_fraction, seed)
    return paired_dataset(root.name, images, masks, splits, num_classes, ignore_index, notes=notes)


def paired_dataset(
    name: str,
    images: Mapping[str, Path],
    masks: Mapping[str, Path],
    splits: Mapping[str, list[str]],
    num_classes: int | None,
    ignore_index: int | None,
    mask_reader: MaskReader = read_mask,
    notes: Iterable[str] = (),
) -> SegmentationDataset:
    """A dataset of image and mask files by sample id; the folder, Pascal VOC and Cityscapes readers end here.

    The masks are read once through `mask_reader` when `num_classes` is None (to count the classes) or
    `ignore_index` is None (to recognise 0/255 masks and ignore labels, see the module docstring).
    """
    notes = list(notes)
    binary_255 = False
    if num_classes is None or ignore_index is None:
        values = mask_values(masks.values(), mask_reader)
        num_classes, binary_255 = classes_from_values(values, num_classes, ignore_index, name)
        if binary_255:
            notes.append(
                f"masks of {name!r} hold only 0 and 255: read as binary, 255 as class 1 "
                "(pass --ignore-index 255 / ignore_index=255 if 255 marks pixels to skip)"
            )
    ordered = [sample_id for split in SPLITS for sample_id in splits.get(split, [])] or sorted(images)
    first_image = read_image(images[ordered[0]])

    def reader(sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(images[sample_id])
        mask = mask_reader(masks[sample_id])
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"Image {str(images[sample_id])!r} is {image.shape[0]}x{image.shape[1]} but its mask "
                f"{str(masks[sample_id])!r} is {mask.shape[0]}x{mask.shape[1]}; they must be the same size."
            )
        if binary_255:
            mask = np.where(mask == 255, 1, mask)
        dataset.check_mask(mask, str(masks[sample_id]))
        return image, mask

    dataset = SegmentationDataset(
        name=name,
        num_classes=num_classes,
        image_channels=first_image.shape[-1],
        splits={split: list(ids) for split, ids in splits.items()},
        reader=reader,
        ignore_index=ignore_index,
        notes=notes,
    )
    return dataset


def mask_values(paths: Iterable[Path], mask_reader: MaskReader = read_mask) -> set[int]:
    """Every value any of the masks holds."""
    values: set[int] = set()
    for path in paths:
        values.update(int(value) for value in np.unique(mask_reader(path)))
    return values


def classes_from_values(values: set[int], num_classes: int | None, ignore_index: int | None, name: str) -> tuple[int, bool]:
    """The class count the mask values make, and whether they are 0/255 binary masks to read as 0/1.

    Raises:
        DataError: The values look like an ignore label or grey levels rather than class indices (naming
            them and the option that settles it), are negative, or are all the ignore index.
    """
    seen = ", ".join(map(str, sorted(values)[:12])) + (" ..." if len(values) > 12 else "")
    if ignore_index is not None:
        values = values - {ignore_index}
    if not values:
        raise DataError(f"Every mask pixel of {name!r} is the ignore index {ignore_index}; nothing to learn from.")
    if min(values) < 0:
        raise DataError(f"Masks of {name!r} hold negative class index {min(values)}; class indices start at 0.")
    if ignore_index is None and 255 in values and num_classes in (None, 2) and values <= {0, 255}:
        return 2, True
    if num_classes is not None:
        if ignore_index is None and 255 in values and num_classes <= 255:
            raise DataError(
                f"Masks of {name!r} hold the values {seen}: 255 is no class of {num_classes}. If 255 marks pixels to skip "
                "(Pascal VOC's and Cityscapes' convention), pass --ignore-index 255 (ignore_index=255)."
            )
        return num_classes, False
    others = values - {255}
    if 255 in values and max(others, default=0) <= SMALL_CLASS_INDEX:
        raise DataError(
            f"Masks of {name!r} hold the values {seen}: 255 beside small class indices is usually the label of pixels "
            f"to skip (Pascal VOC, Cityscapes). Pass --ignore-index 255 (ignore_index=255) to skip them, which gives "
            f"{max(2, max(others, default=0) + 1)} classes, or --num-classes (num_classes=) to say how many classes there are."
        )
    inferred = max(2, max(values) + 1)
    if inferred > 16 and inferred > 4 * len(values):
        raise DataError(
            f"Masks of {name!r} hold the values {seen}, which would make {inferred} classes of which {len(values)} occur: "
            f"they look like grey levels, not class indices. Store class indices 0..{len(values) - 1} in the masks, "
            "or pass --num-classes (num_classes=) if the masks are right."
        )
    return inferred, False


def match_masks(
    images: Mapping[str, Path],
    masks: Mapping[str, Path],
    mask_pattern: str | None,
    image_folder: Path,
    mask_folder: Path,
    notes: list[str],
) -> dict[str, tuple[Path, Path]]:
    """Image stem -> (image, mask): by `mask_pattern`, by equal stems, or by the one suffix that pairs every file.

    Raises:
        DataError: An image without a mask or a mask without an image, naming a few and the pattern to give.
    """
    if mask_pattern is not None:
        by_name = {path.name: path for path in masks.values()}
        with_suffix = Path(mask_pattern).suffix.lower() in IMAGE_SUFFIXES
        expected = {stem: mask_pattern.format(stem=stem) for stem in images}
        lookup = by_name if with_suffix else masks
        pairs = {stem: (images[stem], lookup[name]) for stem, name in expected.items() if name in lookup}
        _check_pairs(images, pairs, image_folder, mask_folder, f"named {mask_pattern!r}")
        used = {pair[1] for pair in pairs.values()}
        _check_unused([path for path in masks.values() if path not in used], mask_folder, f"named {mask_pattern!r} after an image")
        return pairs
    if set(masks) == set(images):
        return {stem: (images[stem], masks[stem]) for stem in images}
    for suffix in MASK_SUFFIXES:
        stripped = {stem[: -len(suffix)]: path for stem, path in masks.items() if stem.endswith(suffix)}
        if len(stripped) == len(masks) and set(stripped) == set(images):
            example = next(iter(stripped.values())).name
            notes.append(f"masks in {str(mask_folder)!r} pair with images by the suffix {suffix!r} (e.g. {example})")
            return {stem: (images[stem], stripped[stem]) for stem in images}
    pairs = {stem: (images[stem], masks[stem]) for stem in images if stem in masks}
    _check_pairs(images, pairs, image_folder, mask_folder, "with the same stem")
    _check_unused([masks[stem] for stem in sorted(set(masks) - set(images))], mask_folder, "with an image of the same stem")
    return pairs


def complete_splits(given: Mapping[str, list[str]], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """The splits a layout gave, with validation and test carved from `train` where the layout gave none."""
    if not given.get("train"):
        raise DataError(f"The layout gives the splits {sorted(given)} but no training images; add a train split.")
    splits = {name: list(given.get(name, [])) for name in SPLITS}
    missing = {name: fraction for name, fraction in (("val", val_fraction), ("test", test_fraction)) if not splits[name] and fraction > 0}
    if missing:
        carved = seeded_split(splits["train"], {"train": 0.0, **missing}, seed)
        splits.update(carved)
    return splits


def _check_pattern(mask_pattern: str | None) -> None:
    if mask_pattern is None:
        return
    if "{stem}" not in mask_pattern or "/" in mask_pattern or "\\" in mask_pattern:
        raise DataError(
            f"mask_pattern {mask_pattern!r} must be a file name holding {{stem}} (the image's file name without its "
            "suffix), such as '{stem}_mask.png'; the masks folder is found on its own."
        )
    try:
        mask_pattern.format(stem="x")
    except (KeyError, IndexError, ValueError) as error:
        raise DataError(f"mask_pattern {mask_pattern!r} has a placeholder other than {{stem}} ({error}); write it like '{{stem}}_mask.png'.") from None


def _one_folder(root: Path, mask_pattern: str | None) -> tuple[dict[str, Path], dict[str, Path]] | None:
    """(images, masks) of a folder that holds both (`img_001.jpg` beside `img_001_mask.png`), or None if it does not."""
    if not root.is_dir():
        return None
    files = {path.stem: path for path in sorted(root.iterdir()) if not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES}
    if mask_pattern is not None:
        names = {mask_pattern.format(stem=stem) for stem in files}
        is_mask = {stem for stem, path in files.items() if path.name in names or stem in names}
        if is_mask:
            return {stem: path for stem, path in files.items() if stem not in is_mask}, {stem: files[stem] for stem in is_mask}
        return None
    for suffix in MASK_SUFFIXES:
        is_mask = {stem for stem in files if stem.endswith(suffix) and stem[: -len(suffix)] in files}
        if is_mask:
            return {stem: path for stem, path in files.items() if stem not in is_mask}, {stem: files[stem] for stem in is_mask}
    return None


def _split_folders(root: Path) -> dict[str, tuple[Path, Path]]:
    """Split -> (images folder, masks folder) for the split layouts of the module docstring, if `root` has one."""
    found: dict[str, tuple[Path, Path]] = {}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            pair = _split_pair(root, name)
            if pair is not None:
                found[split] = pair
                break
    return found


def _split_pair(root: Path, name: str) -> tuple[Path, Path] | None:
    if (root / name).is_dir():
        for pattern in SPLIT_MASK_FOLDERS:
            if (root / pattern.format(name=name)).is_dir():
                return root / name, root / pattern.format(name=name)
        for folder in MASK_FOLDERS:
            if (root / name / "images").is_dir() and (root / name / folder).is_dir():
                return root / name / "images", root / name / folder
    for folder in MASK_FOLDERS:
        if (root / "images" / name).is_dir() and (root / folder / name).is_dir():
            return root / "images" / name, root / folder / name
    return None


def _mask_folder(root: Path) -> Path:
    for name in MASK_FOLDERS:
        if (root / name).is_dir():
            return root / name
    return root / MASK_FOLDERS[0]


def _files_by_stem(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(
            f"{str(folder)!r} is not a folder. A folder dataset needs images/ and masks/ side by side (or split folders "
            "such as train/ and train_masks/), with one mask per image."
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


def _check_pairs(images: Mapping[str, Path], pairs: Mapping[str, tuple], image_folder: Path, mask_folder: Path, how: str) -> None:
    without_mask = sorted(set(images) - set(pairs))
    if without_mask:
        listed = ", ".join(images[stem].name for stem in without_mask[:5])
        raise DataError(
            f"{len(without_mask)} image(s) in {str(image_folder)!r} have no mask in {str(mask_folder)!r} {how}: "
            f"{listed}{' ...' if len(without_mask) > 5 else ''}. Name the masks' pattern with --mask-pattern "
            "(mask_pattern=), e.g. '{stem}_mask.png', or add the masks."
        )


def _check_unused(unused: list[Path], mask_folder: Path, how: str) -> None:
    if unused:
        listed = ", ".join(path.name for path in unused[:5])
        raise DataError(
            f"{len(unused)} mask(s) in {str(mask_folder)!r} have no image {how}: {listed}{' ...' if len(unused) > 5 else ''}. "
            "Add the images, remove the masks, or name the masks' pattern with --mask-pattern."
        )


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
