"""Datasets (folder, Oxford-IIIT Pet, synthetic) and the pipeline that feeds them to a model."""

from __future__ import annotations

from pathlib import Path

from segprune.data._imageio import DataError
from segprune.data.dataset import SegmentationDataset
from segprune.data.folder import folder_dataset
from segprune.data.pet import is_pet_layout, pet_dataset
from segprune.data.pipeline import BatchConfig, TrainingBatches, adapt_channels
from segprune.data.synthetic import synthetic_dataset

BUILT_IN = "synthetic"


def load_data(source: str | Path, **options) -> SegmentationDataset:
    """Resolves what the CLI calls DATA: `"synthetic"`, an Oxford-IIIT Pet folder, or a folder dataset.

    Args:
        source: `"synthetic"` or a folder path.
        **options: Passed to the dataset constructor (for example `num_classes=` or `ignore_index=`).

    Example:
        >>> data = load_data("synthetic")
        >>> data.num_classes
        4
    """
    if str(source) == BUILT_IN:
        return synthetic_dataset(**options)
    root = Path(source)
    if not root.exists():
        raise DataError(f"No dataset at {str(root)!r}. DATA is 'synthetic' or a folder with images/ and masks/.")
    if is_pet_layout(root):
        return pet_dataset(root, **options)
    return folder_dataset(root, **options)


__all__ = [
    "BatchConfig",
    "DataError",
    "SegmentationDataset",
    "TrainingBatches",
    "adapt_channels",
    "folder_dataset",
    "load_data",
    "pet_dataset",
    "synthetic_dataset",
]
