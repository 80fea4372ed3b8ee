"""Data held in Python, in the forms `model.fit` takes, read once into a `SegmentationDataset` in memory.

Forms: NumPy arrays (`(images, masks)`: images (N, H, W, C), masks (N, H, W) or (N, H, W, 1)), a
`tf.data.Dataset` or a `keras.utils.PyDataset` of `(images, masks)` batches (a third element, sample
weights, is dropped), or a dict naming the splits (`{"train": ..., "val": ..., "test": ...}`, each in any
of those forms). NumPy arrays and a PyDataset need no TensorFlow, so they work under JAX and PyTorch too.

What a folder's files say, the arrays say the same way:
- images: uint8 (0..255) or uint16 are scaled to [0, 1]; float images must already be in [0, 1];
- masks: integer class indices (float masks holding whole numbers are read as such); the class count is the
  one given (the API passes the model's), else read from the masks, with 0/255 masks read as 0/1 and 255
  beside small classes refused until `ignore_index=255` or `num_classes` is given (`folder.classes_from_values`);
- splits: without a dict, a seeded split by `val_fraction` and `test_fraction` (15% each, seed 0, as for a
  folder), so the same images give the same split whichever form carries them; a dict without a validation
  or test split has them carved from `train`.

Every sample's id carries a digest of its pixels (`00003-1f2e3d4c`), so a resumed run recognises the same
data by content and refuses other data (`training.run_state.data_fingerprint` digests the ids). The batches are
read once; more than `max_bytes` (4 GiB by default) is refused: such data belongs in a folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import keras
import numpy as np

from segprune.data._imageio import DataError
from segprune.data.dataset import SPLITS, SegmentationDataset, seeded_split
from segprune.data.folder import classes_from_values, complete_splits
from segprune.data.instances import InstanceDataset

MAX_BYTES = 4 * 2**30
ACCEPTED = (
    "a SegmentationDataset (segprune.load_data(...)), NumPy arrays (images, masks), a tf.data.Dataset or "
    "keras.utils.PyDataset of (images, masks) batches, or a dict of such per split ('train', 'val', 'test')"
)

Pairs = list[tuple[np.ndarray, np.ndarray]]
# What `data=` takes: a dataset, (images, masks) arrays, batches (a tf.data.Dataset is an Iterable), or a dict of them by split.
DataLike = SegmentationDataset | InstanceDataset | tuple | Mapping | keras.utils.PyDataset | Iterable


class ArrayReader:
    """Sample id to (image, mask) from arrays in memory; it pickles, so search worker processes get a copy.

    Images are stored as given (uint8 stays four times smaller) and scaled to float32 in [0, 1] when read.
    """

    def __init__(self, samples: Mapping[str, tuple[np.ndarray, np.ndarray]], binary_255: bool = False) -> None:
        self.samples = dict(samples)
        self.binary_255 = binary_255

    def __call__(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.samples[sample_id]
        if image.dtype in (np.uint8, np.uint16):
            image = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 65535.0)
        mask = mask.astype(np.int32)
        if self.binary_255:
            mask = np.where(mask == 255, 1, mask)
        return image.astype(np.float32, copy=False), mask


def in_memory(data) -> bool:
    """Whether `data` was read from Python (its samples travel with it, to worker processes too)."""
    return isinstance(data, SegmentationDataset) and isinstance(data.reader, ArrayReader)


def from_arrays(
    images,
    masks,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    split: str | None = None,
    name: str = "arrays",
) -> SegmentationDataset:
    """NumPy arrays of images and masks as a dataset, split as a folder of the same images would be.

    Args:
        images: (N, H, W, C), uint8/uint16 or float in [0, 1].
        masks: (N, H, W) or (N, H, W, 1) class indices.
        num_classes: Classes including background; read from the masks when None.
        ignore_index: Mask value that losses and metrics skip (for example 255), or None.
        val_fraction: Share held out for validation.
        test_fraction: Share held out for testing.
        seed: Seed of the split.
        split: Put every sample in this split instead (`"test"` to evaluate on all of them).
        name: Shown in reports.

    Example:
        >>> data = from_arrays(images, masks)  # images (8, 32, 32, 3) uint8, masks (8, 32, 32) in {0, 1}
        >>> data.num_classes, len(data.ids("train")), len(data.ids("val")), len(data.ids("test"))
        (2, 6, 1, 1)
    """
    pairs = _check_pairs(images, masks, "")
    return _dataset({None: pairs}, name, num_classes, ignore_index, val_fraction, test_fraction, seed, split)


def as_dataset(
    data: DataLike,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    split: str | None = None,
    max_bytes: int = MAX_BYTES,
):
    """`data` in any form the module docstring lists, as a `SegmentationDataset`; a dataset is returned as it is.

    `prune`, `sparsify`, `train` and `evaluate` call this with the class count the model predicts (and
    `evaluate` with `split=` the split it scores, so that all the images given are scored). Call it
    yourself to choose the options, or to hold the split a call carved (the same data give the same split).

    Args:
        data: A `SegmentationDataset` (or `InstanceDataset`), `(images, masks)` arrays, a `tf.data.Dataset` or
            `keras.utils.PyDataset` of `(images, masks)` batches, or a dict of those by split name.
        num_classes, ignore_index, val_fraction, test_fraction, seed, split: As in `from_arrays`.
        max_bytes: The most image and mask bytes read into memory.

    Example:
        >>> data = as_dataset(tf.data.Dataset.from_tensor_slices((images, masks)).batch(4), ignore_index=255)
        >>> segprune.prune(model, "l1", target="flops=0.5", data=data, finetune_epochs=2)
    """
    if isinstance(data, (SegmentationDataset, InstanceDataset)):
        return data
    if isinstance(data, Mapping):
        unknown = sorted(set(map(str, data)) - set(SPLITS))
        if unknown or "train" not in data:
            raise DataError(f"A dict of data names its splits 'train' (needed), 'val' and 'test'; got keys {sorted(map(str, data))}.")
        by_split = {name: _read(form, f"of split {name!r} ", max_bytes) for name, form in data.items()}
        return _dataset(by_split, "python", num_classes, ignore_index, val_fraction, test_fraction, seed, split)
    pairs = _read(data, "", max_bytes)
    return _dataset({None: pairs}, _name(data), num_classes, ignore_index, val_fraction, test_fraction, seed, split)


def check_fingerprintable(data, action: str = "resume") -> None:
    """Refuses to resume on data whose identity segprune cannot check: a `SegmentationDataset` with a reader of your own.

    A folder's or a built-in dataset's sample ids name its files, and Python data's ids carry a digest of their
    pixels; a reader of your own may return anything for an id, so a run could continue on other images
    unnoticed.
    """
    if not isinstance(data, SegmentationDataset) or in_memory(data):
        return
    module = getattr(data.reader, "__module__", None) or ""
    if module.startswith("segprune."):
        return
    described = getattr(data.reader, "__qualname__", type(data.reader).__name__)
    raise DataError(
        f"Cannot {action} on dataset {data.name!r}: its reader is your own ({described}), and its sample ids do not show "
        "whether the images are the ones the run started with. Pass the images as arrays or batches "
        "(segprune.data.as_dataset / from_arrays: fingerprinted by their pixels) or as a folder, or start afresh with resume=False."
    )


def _read(form, where: str, max_bytes: int) -> Pairs:
    """The (images, masks) pairs of one form: arrays as they are, batches read once."""
    if isinstance(form, (tuple, list)) and len(form) == 2 and not _is_batches(form):
        return _check_pairs(form[0], form[1], where)
    if _is_tf_dataset(form):
        cardinality = int(form.cardinality())
        if cardinality == -1:  # tf.data.INFINITE_CARDINALITY
            raise DataError(f"The tf.data.Dataset {where}repeats forever; segprune reads it once: leave out .repeat().")
        return _read_batches(form.as_numpy_iterator(), f"tf.data.Dataset {where}", max_bytes)
    if isinstance(form, keras.utils.PyDataset):
        count = form.num_batches
        if count is None:
            raise DataError(f"The {type(form).__name__} {where}is infinite (num_batches is None); segprune reads it once: give it a length.")
        return _read_batches((form[index] for index in range(count)), f"{type(form).__name__} {where}", max_bytes)
    received = f"{type(form).__module__}.{type(form).__name__}"
    raise DataError(f"data= {where}takes {ACCEPTED}; got {received}.")


def _read_batches(batches, described: str, max_bytes: int) -> Pairs:
    pairs: Pairs = []
    size = 0
    for number, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise DataError(
                f"Batch {number} of the {described.strip()} is a {type(batch).__name__}; expected (images, masks) or (images, masks, weights)."
            )
        block = _check_pairs(batch[0], batch[1], f"of batch {number} of the {described}")
        pairs.extend(block)
        size += sum(image.nbytes + mask.nbytes for image, mask in block)
        if size > max_bytes:
            raise DataError(
                f"The {described.strip()} holds more than {max_bytes / 2**30:.3g} GiB (read {len(pairs)} images so far); segprune "
                "keeps Python data in memory. Write it out as a folder (images/ + masks/) and pass its path, or raise max_bytes=."
            )
    if not pairs:
        raise DataError(f"The {described.strip()} holds no batches.")
    return pairs


def _check_pairs(images, masks, where: str) -> Pairs:
    """One block of images and masks, checked as a whole: ranks, counts, sizes, pixel types and value ranges."""
    if isinstance(images, Mapping) or isinstance(masks, Mapping):
        raise DataError(f"Images and masks {where}are dicts; segprune takes one image input and one mask: (images, masks) arrays.")
    images, masks = np.asarray(images), np.asarray(masks)
    if images.ndim != 4:
        hint = {2: "", 3: ": one image, or grayscale images without a channel axis? Pass images[None] for one image, images[..., None] for grayscale"}
        if images.ndim == 3 and "batch" in where:
            hint[3] = ": single images? Batch the dataset (.batch(8))"
        raise DataError(f"Images {where}have shape {images.shape}; expected (N, H, W, C){hint.get(images.ndim, '')}.")
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim == 4:
        raise DataError(f"Masks {where}have shape {masks.shape}: one-hot or per-class maps? A mask holds one class index per pixel: pass masks.argmax(-1).")
    if masks.ndim != 3:
        raise DataError(f"Masks {where}have shape {masks.shape}; expected (N, H, W) or (N, H, W, 1) class indices.")
    if len(images) != len(masks):
        raise DataError(f"Images {where}hold {len(images)} samples but masks {len(masks)}; give one mask per image.")
    if len(images) == 0:
        raise DataError(f"Images {where}hold no samples.")
    if images.shape[1:3] != masks.shape[1:3]:
        raise DataError(f"Images {where}are {images.shape[1]}x{images.shape[2]} but masks {masks.shape[1]}x{masks.shape[2]}; they must be the same size.")
    _check_images(images, where)
    masks = _checked_masks(masks, where)
    return list(zip(images, masks))


def _check_images(images: np.ndarray, where: str) -> None:
    if images.dtype in (np.uint8, np.uint16):
        return
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"Images {where}have pixel type {images.dtype}; expected uint8, uint16 or float in [0, 1] (images.astype(np.uint8) for 0..255).")
    low, high = float(np.min(images)), float(np.max(images))
    if not (0.0 <= low and high <= 1.0):  # written so that NaN fails too
        hint = "divide them by 255 (or pass uint8)" if 0.0 <= low and high <= 255.0 else "rescale them to [0, 1]"
        raise DataError(f"Images {where}are float with values in [{low:g}, {high:g}]; segprune's models take images in [0, 1]: {hint}.")


def _checked_masks(masks: np.ndarray, where: str) -> np.ndarray:
    if np.issubdtype(masks.dtype, np.integer) or masks.dtype == bool:
        return masks
    if not np.issubdtype(masks.dtype, np.floating):
        raise DataError(f"Masks {where}have type {masks.dtype}; a mask holds integer class indices.")
    fractional = masks[masks != np.round(masks)]
    if fractional.size:
        raise DataError(
            f"Masks {where}are {masks.dtype} with non-integer values (e.g. {float(fractional[0]):g}); a mask holds class indices: "
            "resize masks by nearest neighbour, take argmax of probabilities, or cast class indices to int."
        )
    return masks.astype(np.int32)


def _dataset(
    by_split: Mapping[str | None, Pairs], name: str, num_classes, ignore_index, val_fraction, test_fraction, seed, split
) -> SegmentationDataset:
    """The dataset of the pairs: ids with their pixels' digest, classes read from the masks, the split made or given."""
    if split is not None and split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}.")
    total = sum(len(pairs) for pairs in by_split.values())
    width = max(5, len(str(total - 1)))
    samples: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    given: dict[str, list[str]] = {}
    for split_name, pairs in by_split.items():
        ids = [f"{len(samples) + index:0{width}d}-{_digest(image, mask)}" for index, (image, mask) in enumerate(pairs)]
        samples.update(zip(ids, pairs))
        given[split_name or "train"] = ids
    channels = {image.shape[-1] for image, _ in samples.values()}
    if len(channels) > 1:
        raise DataError(f"The images of {name!r} have {sorted(channels)} channels; give them one channel count.")
    values: set[int] = set()
    for _, mask in samples.values():
        values.update(int(value) for value in np.unique(mask))
    try:
        num_classes, binary_255 = classes_from_values(values, num_classes, ignore_index, name)
    except DataError as error:  # its fix names the command line's options and load_data's; Python data take them here
        raise DataError(f"{error} For data from Python: segprune.data.as_dataset(data, ignore_index=..., num_classes=...).") from None
    beyond = sorted(value for value in values if value >= num_classes and value != ignore_index and not (binary_255 and value == 255))
    if beyond:
        raise DataError(
            f"Masks of {name!r} hold class index {beyond[-1]}, but there are {num_classes} classes (0..{num_classes - 1}; "
            f"the model's count when called by prune/train/evaluate). For a label to skip, pass segprune.data.as_dataset(data, ignore_index=...); "
            "else build the model for more classes."
        )
    notes = [f"masks of {name!r} hold only 0 and 255: read as binary, 255 as class 1 (pass ignore_index=255 if 255 marks pixels to skip)"] if binary_255 else []
    if split is not None:
        splits = {split: sorted(samples)}
    elif None in by_split:
        splits = seeded_split(sorted(samples), {"train": 0.0, "val": val_fraction, "test": test_fraction}, seed)
    else:
        splits = complete_splits(given, val_fraction, test_fraction, seed)
    return SegmentationDataset(
        name=name, num_classes=num_classes, image_channels=channels.pop(), splits=splits, reader=ArrayReader(samples, binary_255),
        ignore_index=ignore_index, notes=notes,
    )


def _digest(image: np.ndarray, mask: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in (image, mask.astype(np.int32, copy=False)):
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:8]


def _is_tf_dataset(form) -> bool:
    # duck-typed, so that reading arrays never imports TensorFlow (JAX and PyTorch users may not load it)
    return type(form).__module__.startswith("tensorflow") and hasattr(form, "as_numpy_iterator")


def _is_batches(form) -> bool:
    return any(_is_tf_dataset(item) or isinstance(item, keras.utils.PyDataset) for item in form)


def _name(form) -> str:
    if isinstance(form, (tuple, list)):
        return "arrays"
    return "tf.data" if _is_tf_dataset(form) else type(form).__name__


__all__ = ["MAX_BYTES", "ArrayReader", "DataLike", "as_dataset", "check_fingerprintable", "from_arrays", "in_memory"]
