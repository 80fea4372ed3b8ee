"""Datasets (built-in nuclei tiles and brain slices, folder, Oxford-IIIT Pet, Pascal VOC, Cityscapes, synthetic, data from Python) and the pipeline that feeds them to a model."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

from segprune.data._imageio import DataError
from segprune.data.brain import CLASS_NAMES as BRAIN_CLASS_NAMES
from segprune.data.brain import brain_dataset
from segprune.data.cityscapes import cityscapes_dataset, is_cityscapes_layout
from segprune.data.dataset import SegmentationDataset
from segprune.data.folder import folder_dataset
from segprune.data.pet import is_pet_layout, pet_dataset
from segprune.data.pipeline import BatchConfig, TrainingBatches, adapt_channels
from segprune.data.python import MAX_BYTES, as_dataset, check_fingerprintable, from_arrays, in_memory
from segprune.data.synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES
from segprune.data.synthetic import synthetic_dataset
from segprune.data.voc import is_voc_layout, voc_dataset

NUCLEI_ROOT = Path(__file__).resolve().parent / "builtin" / "nuclei"
# The names DATA may take besides a folder: real binary nuclei tiles (the default), real multi-class brain MRI slices
# and a multi-class generator.
BUILT_IN = ("nuclei", "brain", "synthetic")
# What each class of a built-in dataset is, by dataset name (for per-class tables).
CLASS_NAMES = {"nuclei": ("background", "nucleus"), "brain": BRAIN_CLASS_NAMES, "synthetic": SYNTHETIC_CLASS_NAMES}


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


@dataclass(frozen=True)
class DataSource:
    """DATA with the options it is read with, for processes that load the data themselves (search workers).

    Example:
        >>> source = DataSource("mydata", (("ignore_index", 255),))
        >>> load_data(source).ignore_index
        255
    """

    source: str
    options: tuple[tuple[str, object], ...] = ()


def load_data(source: str | Path | DataSource | SegmentationDataset, **options) -> SegmentationDataset:
    """Resolves what the CLI calls DATA: `"nuclei"`, `"brain"`, `"synthetic"`, an Oxford-IIIT Pet folder, or a folder dataset.

    Args:
        source: `"nuclei"` (built-in real tiles, binary), `"brain"` (built-in real MRI slices, 9 classes; see
            `segprune.data.brain`), `"synthetic"` (generated, multi-class) or a folder path; a dataset (data read
            from Python, which a search's worker processes receive whole) is returned as it is.
        **options: Passed to the dataset reader (for example `num_classes=`, `ignore_index=` or
            `mask_pattern=`); None values are left out, and an option the layout does not take is refused.

    A folder is read by the first layout it matches: Oxford-IIIT Pet (`pet_dataset`), Pascal VOC
    (`voc_dataset`), Cityscapes (`cityscapes_dataset`), else a folder of images and masks (`folder_dataset`,
    which also finds split folders such as `train/` + `train_masks/` and masks named `img_001_mask.png`).

    Example:
        >>> data = load_data("nuclei")
        >>> data.num_classes
        2
        >>> data = load_data("mydata", mask_pattern="{stem}_mask.png", ignore_index=255)
    """
    if isinstance(source, SegmentationDataset):  # data from Python, sent whole to a search's worker processes
        return source
    if isinstance(source, DataSource):
        source, options = source.source, {**dict(source.options), **options}
    options = {name: value for name, value in options.items() if value is not None}
    if str(source) == "nuclei":
        return _read(nuclei_dataset, "the built-in nuclei tiles", options)
    if str(source) == "brain":
        return _read(brain_dataset, "the built-in brain slices", options)
    if str(source) == "synthetic":
        return _read(synthetic_dataset, "the synthetic dataset", options)
    root = Path(source)
    if not root.exists():
        raise DataError(
            f"No dataset at {str(root)!r}. DATA is one of {', '.join(BUILT_IN)} (built in) or a folder with "
            "images/ and masks/ (or train/ and train_masks/, Pascal VOC, Cityscapes, Oxford-IIIT Pet)."
        )
    if is_pet_layout(root):
        return _read(pet_dataset, f"{str(root)!r} (Oxford-IIIT Pet layout)", options, root)
    if is_voc_layout(root):
        return _read(voc_dataset, f"{str(root)!r} (Pascal VOC layout)", options, root)
    if is_cityscapes_layout(root):
        return _read(cityscapes_dataset, f"{str(root)!r} (Cityscapes layout)", options, root)
    return _read(folder_dataset, f"{str(root)!r}", options, root)


def _read(reader, described: str, options: dict, *arguments) -> SegmentationDataset:
    """Calls a dataset reader, refusing by name an option it does not take (a --mask-pattern for the Pet layout)."""
    parameters = inspect.signature(reader).parameters
    if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters.values()):
        refused = sorted(set(options) - set(parameters))
        if refused:
            taken = [name for name in parameters if name not in ("root", "path")]
            raise DataError(
                f"{described} does not take {', '.join(refused)}: its classes and layout are fixed. "
                f"It takes {', '.join(taken) or 'no options'}; leave the others out."
            )
    return reader(*arguments, **options)


__all__ = [
    "CLASS_NAMES",
    "MAX_BYTES",
    "NUCLEI_ROOT",
    "BatchConfig",
    "DataError",
    "DataSource",
    "SegmentationDataset",
    "TrainingBatches",
    "adapt_channels",
    "as_dataset",
    "brain_dataset",
    "check_fingerprintable",
    "cityscapes_dataset",
    "folder_dataset",
    "from_arrays",
    "in_memory",
    "load_data",
    "nuclei_dataset",
    "pet_dataset",
    "synthetic_dataset",
    "voc_dataset",
]
