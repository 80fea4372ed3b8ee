"""From a dataset to batches for `model.fit`: patches or resizing, augmentation, channel adaptation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np
from skimage.transform import resize as skimage_resize

from segprune.data._imageio import DataError
from segprune.data.dataset import SegmentationDataset
from segprune.sizes import as_image_size

SIZE_MODES = ("crop", "resize")
_LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class BatchConfig:
    """How training batches are cut from a dataset.

    Attributes:
        batch_size: Images per batch.
        image_size: Height and width of every patch: N, or (height, width) for rectangular patches (None keeps full
            images; they must then share one size).
        size_mode: `"crop"` takes random patches (reflect-padding smaller images); `"resize"` rescales
            whole images (masks by nearest neighbour).
        augment: Random flips, 90-degree rotations and brightness/contrast changes.
        samples_per_epoch: Patches per epoch; None means one per training image, but at least 64, so that
            tiny datasets still give an epoch a useful number of steps.
        seed: Seed of shuffling, cropping and augmentation.
    """

    batch_size: int = 8
    image_size: int | tuple[int, int] | None = 128
    size_mode: str = "crop"
    augment: bool = True
    samples_per_epoch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.image_size is not None and min(as_image_size(self.image_size)) < 8:
            raise ValueError(f"image_size must be >= 8 (N or (height, width)) or None, got {self.image_size}.")
        if self.size_mode not in SIZE_MODES:
            raise ValueError(f"size_mode must be one of {SIZE_MODES}, got {self.size_mode!r}.")


def adapt_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Converts an image between grayscale and RGB to match a model's input channels."""
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return np.repeat(image, 3, axis=-1)
    if have == 3 and channels == 1:
        return (image @ _LUMINANCE)[..., None]
    raise DataError(f"Cannot adapt an image with {have} channels to a model that takes {channels}.")


class TrainingBatches(keras.utils.PyDataset):
    """Random patches of one split, reshuffled every epoch; feeds `model.fit` from worker threads.

    Batch `i` of epoch `e` depends only on `(seed, e, i)`, so results do not depend on thread timing.

    `soft_targets` (sample id to a float (height, width, channels) map of the full image, such as a
    teacher's soft masks) travel with the mask through the same crops, flips and rotations; batches then
    yield targets of shape (batch, height, width, 1 + channels): the class indices, then those maps.

    `patch` (height, width) overrides `config.image_size`: a model built for one input size trains on
    patches of exactly that size.
    """

    def __init__(
        self,
        dataset: SegmentationDataset,
        split: str,
        input_channels: int,
        config: BatchConfig,
        workers: int = 2,
        soft_targets: Mapping[str, np.ndarray] | None = None,
        patch: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.dataset = dataset
        self.ids = dataset.ids(split)
        self.input_channels = input_channels
        self.config = config
        self.epoch = 0
        self.soft_targets = soft_targets
        self.patch = patch if patch is not None else None if config.image_size is None else as_image_size(config.image_size)
        if soft_targets is not None:
            missing = [sample_id for sample_id in self.ids if sample_id not in soft_targets]
            if missing:
                raise DataError(f"soft_targets has no map for {len(missing)} sample(s) of split {split!r}, e.g. {missing[0]!r}.")
        samples = config.samples_per_epoch or max(len(self.ids), 64)
        self._num_batches = max(1, math.ceil(samples / config.batch_size))

    @property
    def num_batches(self) -> int:
        return self._num_batches

    def __len__(self) -> int:
        return self._num_batches

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        picks = rng.integers(0, len(self.ids), size=self.config.batch_size)
        pairs = [self._prepare(self.ids[pick], rng) for pick in picks]
        images = np.stack([image for image, _ in pairs])
        masks = np.stack([mask for _, mask in pairs])
        return images, masks

    def _prepare(self, sample_id: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.dataset.load(sample_id)
        image = adapt_channels(image, self.input_channels)
        if self.soft_targets is not None:
            # the mask rides as channel 0 of a float target, so every crop, flip and turn moves both alike
            soft = self.soft_targets[sample_id]
            if soft.shape[:2] != mask.shape:
                raise DataError(f"The soft target of {sample_id!r} is {soft.shape[:2]}, its mask {mask.shape}; they must match.")
            mask = np.concatenate([mask[..., None].astype(np.float32), soft.astype(np.float32)], axis=-1)
        size = self.patch
        if size is not None:
            if self.config.size_mode == "crop":
                image, mask = random_crop(image, mask, size, rng)
            else:
                image, mask = resize_pair(image, mask, size)
        if self.config.augment:
            image, mask = augment(image, mask, rng)
        mask_dtype = np.int32 if self.soft_targets is None else np.float32
        return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask, dtype=mask_dtype)


def random_crop(image: np.ndarray, mask: np.ndarray, size: int | tuple[int, int], rng: np.random.Generator, fill_mask: int = 0):
    """A random patch of `size` (an int for a square); smaller images are reflect-padded (the mask too) first."""
    rows, cols = (size, size) if isinstance(size, int) else size
    pad_rows, pad_cols = max(0, rows - image.shape[0]), max(0, cols - image.shape[1])
    if pad_rows or pad_cols:
        padding = ((pad_rows // 2, pad_rows - pad_rows // 2), (pad_cols // 2, pad_cols - pad_cols // 2))
        image = np.pad(image, (*padding, (0, 0)), mode="reflect")
        mask = np.pad(mask, padding + ((0, 0),) * (mask.ndim - 2), mode="reflect")
    top = int(rng.integers(0, image.shape[0] - rows + 1))
    left = int(rng.integers(0, image.shape[1] - cols + 1))
    return image[top : top + rows, left : left + cols], mask[top : top + rows, left : left + cols]


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rescales an image bilinearly and its mask by nearest neighbour to `size` (an int for a square).

    A (height, width, 1 + channels) float mask keeps channel 0 (class indices) nearest-neighbour and
    resizes the soft maps after it bilinearly.
    """
    shape = (size, size) if isinstance(size, int) else tuple(size)
    image = skimage_resize(image, shape, order=1, preserve_range=True, anti_aliasing=False)
    if mask.ndim == 3:
        labels = skimage_resize(mask[..., 0], shape, order=0, preserve_range=True, anti_aliasing=False)
        soft = skimage_resize(mask[..., 1:], shape, order=1, preserve_range=True, anti_aliasing=False)
        return image.astype(np.float32), np.concatenate([labels[..., None], soft], axis=-1).astype(np.float32)
    mask = skimage_resize(mask, shape, order=0, preserve_range=True, anti_aliasing=False)
    return image.astype(np.float32), mask.astype(np.int32)


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random flips, a random multiple of 90 degrees (square patches only), brightness and contrast."""
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    if image.shape[0] == image.shape[1]:
        turns = int(rng.integers(0, 4))
        image, mask = np.rot90(image, turns), np.rot90(mask, turns)
    contrast = rng.uniform(0.8, 1.2)
    brightness = rng.uniform(-0.1, 0.1)
    image = np.clip((image - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
    return image, mask
