"""The dataset object every segprune function takes: named splits of (image, mask) pairs."""

from __future__ import annotations

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

    Attributes:
        name: Shown in reports.
        num_classes: Classes including background.
        image_channels: Channels of the stored images (the pipeline adapts them to a model).
        splits: Split name to the sample ids in it.
        ignore_index: Mask value to skip, or None.
        reader: Loads one sample by id; called lazily and cached.
    """

    name: str
    num_classes: int
    image_channels: int
    splits: Mapping[str, Sequence[str]]
    reader: Reader
    ignore_index: int | None = None
    cache_size: int = 4096
    _cached_reader: Reader = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise DataError(f"Dataset {self.name!r} needs at least 2 classes (background and one more), got {self.num_classes}.")
        self._cached_reader = lru_cache(maxsize=self.cache_size)(self.reader)

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

    def samples(self, split: str) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for sample_id in self.ids(split):
            image, mask = self.load(sample_id)
            yield sample_id, image, mask

    def check_mask(self, mask: np.ndarray, source: str) -> None:
        """Raises if `mask` holds a class index outside [0, num_classes) other than the ignore index."""
        values = np.unique(mask)
        if self.ignore_index is not None:
            values = values[values != self.ignore_index]
        bad = values[(values < 0) | (values >= self.num_classes)]
        if bad.size:
            raise DataError(
                f"Mask {source!r} holds class index {int(bad[0])}, but the dataset has {self.num_classes} classes "
                f"(0..{self.num_classes - 1}, ignore index {self.ignore_index}). Pass num_classes= or ignore_index= "
                "to match the masks, or fix the file."
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
