"""Datasets (built-in nuclei tiles, folder, Oxford-IIIT Pet, synthetic) and the pipeline that feeds them to a model."""

from __future__ import annotations

from pathlib import Path

from segprune.data._imageio import DataError
from segprune.data.dataset import SegmentationDataset
from segprune.data.folder import folder_dataset
from segprune.data.pet import is_pet_layout, pet_dataset
from segprune.data.pipeline import BatchConfig, TrainingBatches, adapt_channels
from segprune.data.synthetic import synthetic_dataset

NUCLEI_ROOT = Path(__file__).resolve().parent / "builtin" / "nuclei"
# The names DATA may take besides a folder: real binary nuclei tiles (the default) and a multi-class generator.
BUILT_IN = ("nuclei", "synthetic")


def nuclei_dataset(**options) -> SegmentationDataset:
    """The 16 built-in 128x128 fluorescence-microscopy tiles of cell nuclei (2018 Data Science Bowl, CC0).

    Binary (background, nucleus), grayscale; the fixed split keeps the grid's last column (4 tiles) for
    testing. The tiles ship inside the package; `builtin/nuclei/README.md` gives their provenance.

    Args:
        **options: Passed to `folder_dataset` (for example `val_fraction=` or `seed=`).

    Example:
        >>> data = nuclei_dataset()
        >>> data.num_classes, len(data.ids("test"))
        (2, 4)
    """
    return folder_dataset(NUCLEI_ROOT, **options)


def load_data(source: str | Path, **options) -> SegmentationDataset:
    """Resolves what the CLI calls DATA: `"nuclei"`, `"synthetic"`, an Oxford-IIIT Pet folder, or a folder dataset.

    Args:
        source: `"nuclei"` (built-in real tiles, binary), `"synthetic"` (generated, multi-class) or a folder path.
        **options: Passed to the dataset constructor (for example `num_classes=` or `ignore_index=`).

    Example:
        >>> data = load_data("nuclei")
        >>> data.num_classes
        2
    """
    if str(source) == "nuclei":
        return nuclei_dataset(**options)
    if str(source) == "synthetic":
        return synthetic_dataset(**options)
    root = Path(source)
    if not root.exists():
        raise DataError(
            f"No dataset at {str(root)!r}. DATA is one of {', '.join(BUILT_IN)} (built in) or a folder with "
            "images/ and masks/."
        )
    if is_pet_layout(root):
        return pet_dataset(root, **options)
    return folder_dataset(root, **options)


__all__ = [
    "NUCLEI_ROOT",
    "BatchConfig",
    "DataError",
    "SegmentationDataset",
    "TrainingBatches",
    "adapt_channels",
    "folder_dataset",
    "load_data",
    "nuclei_dataset",
    "pet_dataset",
    "synthetic_dataset",
]
