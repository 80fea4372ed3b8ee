"""The dataset object every segprune function takes: named splits of (image, mask) pairs."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from segprune.data._imageio import DataError

SPLITS = ("train", "val", "test")

Reader = Callable[[str], tuple[np.ndarray, np.ndarray]]


@dataclass
class SegmentationDataset:
    """Images with per-pixel class masks, in named splits.

    Images are float32 (height, width, channels) in [0, 1]; masks are int32 (height, width) class
    indices, where `ignore_index` marks pixels that losses and metrics skip.

    A reader of your own may return uint8 (0..255) or uint16 images: `load` scales them to [0, 1] and
    records a note (and warns once), because the models are trained on [0, 1]. A float image outside
    [0, 1], or a mask with a class index beyond `num_classes`, is refused naming the sample.

    Attributes:
        name: Shown in reports.
        num_classes: Classes including background.
        image_channels: Channels of the stored images (the pipeline adapts them to a model).
        splits: Split name to the sample ids in it.
        ignore_index: Mask value to skip, or None.
        reader: Loads one sample by id; called lazily and cached.
        notes: What segprune changed while reading (0/255 masks read as 0/1, uint8 images scaled), for
            the user to see; the command line prints them.

    Example:
        >>> def reader(sample_id):
        ...     return my_images[sample_id], my_masks[sample_id]
        >>> data = SegmentationDataset("mine", num_classes=3, image_channels=3,
        ...                            splits={"train": train_ids, "val": val_ids, "test": test_ids}, reader=reader)
    """

    name: str
    num_classes: int
    image_channels: int
    splits: Mapping[str, Sequence[str]]
    reader: Reader
    ignore_index: int | None = None
    cache_size: int = 4096
    notes: list[str] = field(default_factory=list)
    _cached_reader: Reader = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise DataError(f"Dataset {self.name!r} needs at least 2 classes (background and one more), got {self.num_classes}.")
        self._cached_reader = lru_cache(maxsize=self.cache_size)(self._read_checked)

    def __getstate__(self) -> dict:
        # the cache wraps a bound method, which does not pickle; a copy (a search worker's) starts with its own
        return {name: value for name, value in self.__dict__.items() if name != "_cached_reader"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cached_reader = lru_cache(maxsize=self.cache_size)(self._read_checked)

    def ids(self, split: str) -> list[str]:
        """Sample ids of a split; raises if the split is unknown or empty."""
        if split not in self.splits:
            raise DataError(f"Dataset {self.name!r} has no split {split!r}; it has {sorted(self.splits)}.")
        ids = list(self.splits[split])
        if not ids:
            raise DataError(f"Split {split!r} of dataset {self.name!r} is empty.")
        return ids

    def load(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        """One (image, mask) pair. The arrays are shared with the cache: copy before changing them."""
        return self._cached_reader(sample_id)

    def _read_checked(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.reader(sample_id)
        source = f"sample {sample_id!r} of dataset {self.name!r}"
        image = self._unit_image(np.asarray(image), source)
        mask = np.asarray(mask)
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.shape != image.shape[:2]:
            raise DataError(f"The mask of {source} is {mask.shape}, its image {image.shape[:2]}; a mask is (height, width) of the image's size.")
        if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
            if not np.array_equal(mask, np.round(mask)):
                raise DataError(f"The mask of {source} holds non-integer values ({mask.dtype}); a mask holds class indices.")
        mask = mask.astype(np.int32, copy=False)
        self.check_mask(mask, source)
        return image, mask

    def _unit_image(self, image: np.ndarray, source: str) -> np.ndarray:
        """The image as float32 (height, width, channels) in [0, 1]: integer images are scaled with a note, others refused."""
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3:
            raise DataError(f"The image of {source} has shape {image.shape}; expected (height, width, channels).")
        if image.dtype in (np.uint8, np.uint16):
            top = 255 if image.dtype == np.uint8 else 65535
            note = (
                f"dataset {self.name!r}: its reader returns {image.dtype} images (0..{top}); they are scaled to [0, 1], "
                "the range segprune's models are trained on"
            )
            if note not in self.notes:
                self.notes.append(note)
                warnings.warn(note, stacklevel=4)
            return image.astype(np.float32) / top
        if not np.issubdtype(image.dtype, np.floating):
            raise DataError(f"The image of {source} has pixel type {image.dtype}; expected uint8, uint16 or float in [0, 1].")
        low, high = float(np.min(image)), float(np.max(image))
        if low < 0.0 or high > 1.0:
            hint = "divide by 255 in the reader" if low >= 0.0 and high <= 255.0 else "rescale it to [0, 1] in the reader"
            raise DataError(
                f"The image of {source} is float with values in [{low:g}, {high:g}]; segprune's models take images in [0, 1]: {hint}."
            )
        return image.astype(np.float32, copy=False)

    def samples(self, split: str) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for sample_id in self.ids(split):
            image, mask = self.load(sample_id)
            yield sample_id, image, mask

    def check_mask(self, mask: np.ndarray, source: str) -> None:
        """Raises if `mask` holds a class index outside [0, num_classes) other than the ignore index."""
        if mask.size == 0 or (int(mask.min()) >= 0 and int(mask.max()) < self.num_classes):
            return
        values = np.unique(mask)
        if self.ignore_index is not None:
            values = values[values != self.ignore_index]
        bad = values[(values < 0) | (values >= self.num_classes)]
        if bad.size:
            raise DataError(
                f"Mask {source!r} holds class index {int(bad[0])}, but the dataset has {self.num_classes} classes "
                f"(0..{self.num_classes - 1}, ignore index {self.ignore_index}). Pass num_classes= or ignore_index= "
                "(--num-classes, --ignore-index) to match the masks, or fix the file."
            )


def seeded_split(ids: Sequence[str], fractions: Mapping[str, float], seed: int) -> dict[str, list[str]]:
    """Shuffles `ids` with `seed` and cuts them by `fractions` (in the order given; the first takes the rest).

    Every split with a positive fraction gets at least one id when there are enough ids.
    """
    order = sorted(ids)
    np.random.default_rng(seed).shuffle(order)
    names = list(fractions)
    counts = {name: int(round(fractions[name] * len(order))) for name in names[1:]}
    for name in names[1:]:
        if fractions[name] > 0 and counts[name] == 0 and len(order) - sum(counts.values()) > 1:
            counts[name] = 1
    result: dict[str, list[str]] = {}
    start = 0
    for name in names[1:]:
        result[name] = order[start : start + counts[name]]
        start += counts[name]
    result[names[0]] = order[start:]
    return {name: sorted(result[name]) for name in names}
