"""Training batches: sizes, channel adaptation, augmentation that keeps image and mask aligned."""

import numpy as np
import pytest

from segprune.data import BatchConfig, SegmentationDataset, TrainingBatches, adapt_channels
from segprune.data.pipeline import augment, random_crop, resize_pair


def _aligned_dataset(size=(40, 56)):
    """Images whose pixel value encodes the mask, so any misalignment is visible."""
    rng = np.random.default_rng(0)

    def reader(sample_id):
        mask = (rng.random(size) > 0.5).astype(np.int32) if sample_id != "fixed" else np.eye(*size, dtype=np.int32)
        return mask[..., None].astype(np.float32), mask

    return SegmentationDataset("aligned", 2, 1, {"train": ["a", "b", "fixed"]}, reader)


def test_batches_have_the_configured_shape_and_stay_aligned():
    config = BatchConfig(batch_size=4, image_size=32, augment=True, samples_per_epoch=12)
    batches = TrainingBatches(_aligned_dataset(), "train", input_channels=3, config=config, workers=1)
    assert len(batches) == 3
    images, masks = batches[0]
    assert images.shape == (4, 32, 32, 3) and masks.shape == (4, 32, 32)
    assert images.dtype == np.float32 and masks.dtype == np.int32
    # Brightness/contrast change values but not their order: foreground stays brighter than background.
    for image, mask in zip(images[..., 0], masks):
        if 0 < mask.sum() < mask.size:
            assert image[mask == 1].min() > image[mask == 0].max()


def test_batches_are_deterministic_per_epoch_and_index():
    config = BatchConfig(batch_size=2, image_size=16, seed=7)
    first = TrainingBatches(_aligned_dataset(), "train", 1, config, workers=1)
    second = TrainingBatches(_aligned_dataset(), "train", 1, config, workers=1)
    np.testing.assert_array_equal(first[1][1], second[1][1])
    first.on_epoch_end()
    assert not np.array_equal(first[1][1], second[1][1])


def test_small_images_are_padded_and_resize_mode_rescales():
    image = np.random.rand(10, 12, 1).astype(np.float32)
    mask = np.zeros((10, 12), dtype=np.int32)
    cropped_image, cropped_mask = random_crop(image, mask, 16, np.random.default_rng(0))
    assert cropped_image.shape == (16, 16, 1) and cropped_mask.shape == (16, 16)
    resized_image, resized_mask = resize_pair(image, mask + 2, 24)
    assert resized_image.shape == (24, 24, 1) and set(np.unique(resized_mask)) == {2}


def test_augment_preserves_pairs():
    rng = np.random.default_rng(1)
    mask = np.arange(64).reshape(8, 8) % 2
    for _ in range(10):
        image, out_mask = augment(mask[..., None].astype(np.float32), mask, rng)
        foreground, background = image[..., 0][out_mask == 1], image[..., 0][out_mask == 0]
        assert foreground.min() >= background.max()


def test_adapt_channels():
    gray = np.random.rand(4, 4, 1).astype(np.float32)
    assert adapt_channels(gray, 3).shape == (4, 4, 3)
    rgb = np.random.rand(4, 4, 3).astype(np.float32)
    np.testing.assert_allclose(adapt_channels(rgb, 1)[..., 0], rgb @ np.array([0.299, 0.587, 0.114]), rtol=1e-6)
    with pytest.raises(ValueError, match="4 channels"):
        adapt_channels(np.zeros((2, 2, 4)), 3)


def test_bad_config():
    with pytest.raises(ValueError, match="size_mode"):
        BatchConfig(size_mode="pad")
    with pytest.raises(ValueError, match="batch_size"):
        BatchConfig(batch_size=0)
