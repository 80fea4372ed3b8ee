"""The Oxford-IIIT Pet layout: `images/*.jpg` with trimaps in `annotations/trimaps/*.png`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segprune.data._imageio import DataError, read_image, read_mask
from segprune.data.dataset import SegmentationDataset, seeded_split

BORDER_MODES = ("ignore", "class", "foreground")
IGNORE_INDEX = 255


def is_pet_layout(root: Path) -> bool:
    return (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir()


def pet_dataset(root: str | Path, border: str = "ignore", val_fraction: float = 0.1, seed: int = 0) -> SegmentationDataset:
    """Reads the Oxford-IIIT Pet dataset as unpacked from its two archives.

    Trimap values are 1 (pet), 2 (background) and 3 (the uncertain border). They become class 1, class 0,
    and, by `border`: the ignore index 255 (`"ignore"`, default), a third class 2 (`"class"`, as in
    TensorFlow's segmentation tutorial) or the pet (`"foreground"`). `annotations/trainval.txt` and
    `annotations/test.txt` give the official split when present; validation is carved from trainval.

    Example:
        >>> data = pet_dataset("oxford-iiit-pet")
        >>> data.num_classes
        2
    """
    root = Path(root)
    if border not in BORDER_MODES:
        raise ValueError(f"border must be one of {BORDER_MODES}, got {border!r}.")
    if not is_pet_layout(root):
        raise DataError(f"{str(root)!r} lacks images/ and annotations/trimaps/, the Oxford-IIIT Pet layout.")
    images = {path.stem: path for path in sorted((root / "images").glob("*.jpg"))}
    trimaps = {path.stem: path for path in sorted((root / "annotations" / "trimaps").glob("*.png")) if not path.name.startswith("._")}
    stems = sorted(set(images) & set(trimaps))
    if not stems:
        raise DataError(f"No image in {str(root / 'images')!r} has a trimap with the same stem in annotations/trimaps/.")
    missing = sorted(set(images) - set(trimaps))
    if missing:
        raise DataError(f"Image {str(images[missing[0]])!r} has no trimap ({len(missing)} such images). Restore annotations/trimaps/.")

    splits = _official_split(root, stems, val_fraction, seed)
    lookup = np.array([IGNORE_INDEX, 1, 0, {"ignore": IGNORE_INDEX, "class": 2, "foreground": 1}[border]], dtype=np.int32)

    def reader(stem: str) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(images[stem])
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        trimap = read_mask(trimaps[stem])
        if trimap.min() < 1 or trimap.max() > 3:
            raise DataError(f"Trimap {str(trimaps[stem])!r} holds values outside 1..3; it is not an Oxford-IIIT Pet trimap.")
        if image.shape[:2] != trimap.shape:
            raise DataError(f"Image {str(images[stem])!r} and its trimap differ in size: {image.shape[:2]} vs {trimap.shape}.")
        return image, lookup[trimap]

    return SegmentationDataset(
        name="oxford-iiit-pet",
        num_classes=3 if border == "class" else 2,
        image_channels=3,
        splits=splits,
        reader=reader,
        ignore_index=IGNORE_INDEX if border == "ignore" else None,
    )


def _official_split(root: Path, stems: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    listed = {}
    for name in ("trainval", "test"):
        list_file = root / "annotations" / f"{name}.txt"
        if list_file.exists():
            listed[name] = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip() and not line.startswith("#")]
    available = set(stems)
    if len(listed) == 2:
        trainval = [stem for stem in listed["trainval"] if stem in available]
        test = [stem for stem in listed["test"] if stem in available]
        carved = seeded_split(trainval, {"train": 0.0, "val": val_fraction}, seed)
        return {"train": carved["train"], "val": carved["val"], "test": sorted(test)}
    return seeded_split(stems, {"train": 0.0, "val": val_fraction, "test": 0.2}, seed)
