"""A seeded procedural dataset: textured shapes of several classes on a cluttered background.

Each class is a shape with its own texture (smooth discs, striped boxes, dotted triangles), but colours
and brightness are drawn from one shared range, so a model has to use shape and texture rather than
colour. Objects overlap (later ones occlude earlier ones), and the image is blurred and noisy. Sample
`i` depends only on `(seed, i)`, so any sample can be generated on its own, in any order.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import draw

from segprune.data.dataset import SegmentationDataset

CLASS_NAMES = ("background", "disc", "striped box", "dotted triangle")


def synthetic_dataset(
    num_train: int = 192,
    num_val: int = 32,
    num_test: int = 32,
    image_size: int = 128,
    channels: int = 3,
    seed: int = 0,
) -> SegmentationDataset:
    """The built-in dataset: four classes (background, disc, striped box, dotted triangle).

    Args:
        num_train: Training images.
        num_val: Validation images.
        num_test: Test images.
        image_size: Height and width of every image.
        channels: 1 (grayscale) or 3 (RGB).
        seed: Seed of the whole dataset.

    Example:
        >>> data = synthetic_dataset(num_train=8, num_val=2, num_test=2, image_size=64)
        >>> image, mask = data.load(data.ids("train")[0])
        >>> image.shape, mask.shape
        ((64, 64, 3), (64, 64))
    """
    for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    counts = {"train": num_train, "val": num_val, "test": num_test}
    splits, start = {}, 0
    for split, count in counts.items():
        splits[split] = [f"{split}-{index:05d}" for index in range(start, start + count)]
        start += count

    def reader(sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        index = int(sample_id.rsplit("-", 1)[1])
        return generate_sample(np.random.default_rng([seed, index]), image_size, channels)

    return SegmentationDataset(
        name="synthetic",
        num_classes=len(CLASS_NAMES),
        image_channels=channels,
        splits=splits,
        reader=reader,
    )


def generate_sample(rng: np.random.Generator, size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image, mask) pair drawn from `rng`."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = _background(rng, rows, cols, size)
    mask = np.zeros((size, size), dtype=np.int32)
    for _ in range(rng.integers(3, 8)):
        class_index = int(rng.integers(1, len(CLASS_NAMES)))
        region = _shape(rng, class_index, size)
        colour = rng.uniform(0.25, 0.85, size=3).astype(np.float32)
        texture = _texture(rng, class_index, rows, cols)
        image[region] = colour * texture[region][:, None]
        mask[region] = class_index
    image = ndimage.gaussian_filter(image, sigma=(rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2), 0))
    image += rng.normal(0.0, 0.06, size=image.shape).astype(np.float32)
    image = np.clip(image, 0.0, 1.0)
    if channels == 1:
        image = image.mean(axis=-1, keepdims=True)
    return image.astype(np.float32), mask


def _background(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    gradient = rng.uniform(-0.3, 0.3) * rows + rng.uniform(-0.3, 0.3) * cols
    clutter = ndimage.gaussian_filter(rng.normal(0, 1, size=(size, size)), sigma=size / 16)
    clutter /= np.abs(clutter).max() + 1e-6
    base = rng.uniform(0.2, 0.6, size=3)
    return (base[None, None, :] + (0.5 * gradient + 0.2 * clutter)[..., None]).astype(np.float32)


def _shape(rng: np.random.Generator, class_index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    centre = rng.uniform(0.1 * size, 0.9 * size, size=2)
    radius = rng.uniform(0.07 * size, 0.18 * size)
    angle = rng.uniform(0, np.pi)
    if class_index == 1:
        return draw.ellipse(centre[0], centre[1], radius, radius * rng.uniform(0.6, 1.0), shape=(size, size), rotation=angle)
    if class_index == 2:
        half = np.array([radius, radius * rng.uniform(0.5, 1.0)])
        corners = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]]) * half
    else:
        corners = np.array([[np.cos(a), np.sin(a)] for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)]) * radius * 1.3
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rotation.T + centre
    return draw.polygon(corners[:, 0], corners[:, 1], shape=(size, size))


def _texture(rng: np.random.Generator, class_index: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if class_index == 1:  # smooth shading
        return (0.85 + 0.15 * np.cos(2 * np.pi * (rows * rng.uniform(0.5, 1.5)))).astype(np.float32)
    frequency = rng.uniform(10, 16)
    if class_index == 2:  # stripes at a random angle
        angle = rng.uniform(0, np.pi)
        phase = (rows * np.cos(angle) + cols * np.sin(angle)) * frequency
        return (0.65 + 0.35 * np.sign(np.sin(2 * np.pi * phase))).astype(np.float32)
    dots = np.sin(2 * np.pi * rows * frequency) * np.sin(2 * np.pi * cols * frequency)  # a dot lattice
    return (0.6 + 0.4 * (dots > 0.3)).astype(np.float32)
