"""Instance datasets: a folder's `instances/` label images (one id per object, 0 = background) or a COCO JSON file,
as boxes and masks.

A folder laid out as `images/`, `instances/` and optionally `masks/` (class index per pixel) and `split.txt`
is read as instances. Without `masks/` every instance is of the one foreground class 1; with it, each
instance takes the majority class of its pixels.

Boxes are `(y1, x1, y2, x2)` in pixel-edge coordinates: pixel `(i, j)` covers `[i, i + 1) x [j, j + 1)`, so an
object covering rows 3..5 has `y1 = 3, y2 = 6`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from segprune.data._imageio import DataError, read_array, read_image, read_mask
from segprune.data.folder import _files_by_stem, _read_or_make_split, classes_from_values, mask_values

INSTANCES_FOLDER = "instances"
# The packaged nuclei tiles (segprune.data.NUCLEI_ROOT) carry instances/ too.
_BUILT_IN_NUCLEI = Path(__file__).resolve().parent / "builtin" / "nuclei"


@dataclass(frozen=True)
class Instances:
    """The objects of one image.

    Attributes:
        boxes: float32 (N, 4) `(y1, x1, y2, x2)` in pixel-edge coordinates.
        masks: bool (N, height, width), one full-size mask per object.
        class_ids: int32 (N,), each >= 1 (0 is background).
    """

    boxes: np.ndarray
    masks: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])


def instances_from_masks(masks: np.ndarray, class_ids: np.ndarray) -> Instances:
    """Instances from full-size boolean masks; boxes are the masks' tight bounds, empty masks are dropped.

    Example:
        >>> masks = np.zeros((1, 8, 8), bool); masks[0, 2:4, 3:6] = True
        >>> instances_from_masks(masks, np.array([1])).boxes
        array([[2., 3., 4., 6.]], dtype=float32)
    """
    masks = np.asarray(masks, dtype=bool)
    class_ids = np.asarray(class_ids, dtype=np.int32)
    keep = masks.any(axis=(1, 2))
    masks, class_ids = masks[keep], class_ids[keep]
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for index, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes[index] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return Instances(boxes=boxes, masks=masks, class_ids=class_ids)


def instances_from_labels(labels: np.ndarray, class_mask: np.ndarray | None = None, source: str = "labels") -> Instances:
    """Instances from a label image (one integer id per object, 0 = background).

    Args:
        labels: Integer (height, width) label image.
        class_mask: Optional (height, width) class indices; each instance takes the majority class of its pixels.
        source: Named in errors (a file path).

    Raises:
        DataError: The labels are not integers, are negative, or an instance lies only on background of `class_mask`.

    Example:
        >>> labels = np.zeros((8, 8), np.uint16); labels[1:3, 1:3] = 5
        >>> len(instances_from_labels(labels))
        1
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"Instance image {source!r} has shape {labels.shape}; expected (H, W) with one object id per pixel.")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise DataError(
            f"Instance image {source!r} has pixel type {labels.dtype}; object ids must be integers "
            "(save it as a 16-bit PNG or integer TIFF, 0 = background)."
        )
    ids = np.unique(labels)
    if ids.size and ids[0] < 0:
        raise DataError(f"Instance image {source!r} holds negative id {int(ids[0])}; ids are 0 (background) or positive.")
    ids = ids[ids > 0]
    masks = labels[None, :, :] == ids[:, None, None]
    if class_mask is None:
        class_ids = np.ones(len(ids), dtype=np.int32)
    else:
        class_ids = np.zeros(len(ids), dtype=np.int32)
        for index, (object_id, mask) in enumerate(zip(ids, masks)):
            classes = class_mask[mask]
            classes = classes[classes > 0]
            if classes.size == 0:
                raise DataError(
                    f"Object {int(object_id)} of {source!r} lies only on background in the class mask; "
                    "give it a class in masks/ or remove it from instances/."
                )
            class_ids[index] = np.bincount(classes).argmax()
    return instances_from_masks(masks, class_ids)


def read_instances(path: Path, image_shape: tuple[int, int], class_mask: np.ndarray | None = None) -> Instances:
    """Reads one instance label image and checks it against its image's size."""
    labels = read_array(Path(path))
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape[:2] != tuple(image_shape):
        raise DataError(
            f"Instance image {str(path)!r} is {'x'.join(map(str, labels.shape))} but its image is "
            f"{image_shape[0]}x{image_shape[1]}; write the label image at its image's size (resize with nearest-neighbour, never interpolate ids)."
        )
    return instances_from_labels(labels, class_mask, source=str(path))


Reader = Callable[[str], tuple[np.ndarray, Instances]]


@dataclass
class InstanceDataset:
    """Images with their instances, in named splits.

    Attributes:
        name: Shown in reports.
        num_classes: Classes including background (2 for one foreground class).
        image_channels: Channels of the stored images.
        splits: Split name to the sample ids in it.
        reader: Loads one (image, Instances) pair by id; called lazily and cached.
    """

    name: str
    num_classes: int
    image_channels: int
    splits: Mapping[str, Sequence[str]]
    reader: Reader
    _cached_reader: Reader = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cached_reader = lru_cache(maxsize=4096)(self.reader)

    def ids(self, split: str) -> list[str]:
        if split not in self.splits:
            raise DataError(f"Dataset {self.name!r} has no split {split!r}; it has {sorted(self.splits)}.")
        ids = list(self.splits[split])
        if not ids:
            raise DataError(f"Split {split!r} of dataset {self.name!r} is empty.")
        return ids

    def load(self, sample_id: str) -> tuple[np.ndarray, Instances]:
        """One (image, instances) pair; the arrays are shared with the cache: copy before changing them."""
        return self._cached_reader(sample_id)

    def samples(self, split: str) -> Iterator[tuple[str, np.ndarray, Instances]]:
        for sample_id in self.ids(split):
            image, instances = self.load(sample_id)
            yield sample_id, image, instances

    def check(self) -> None:
        """Reads every sample once, so that an unusable file fails now (naming it) rather than mid-training."""
        for sample_ids in self.splits.values():
            for sample_id in sample_ids:
                self.load(sample_id)


def load_instance_data(source: str | Path, **options) -> InstanceDataset:
    """Resolves what the CLI calls DATA for instance models: `"nuclei"` (the built-in tiles) or a folder with `instances/`.

    Args:
        source: `"nuclei"` or a folder path.
        **options: Passed to `instance_dataset` (for example `val_fraction=`).

    Raises:
        DataError: The source has no instance labels (named, with the layout it needs).

    Example:
        >>> load_instance_data("nuclei", val_fraction=0.15).num_classes
        2
    """
    if str(source) == "nuclei":
        return instance_dataset(_BUILT_IN_NUCLEI, **options)
    root = Path(source)
    if not root.is_dir():
        raise DataError(
            f"No instance dataset at {str(source)!r}: instance models take 'nuclei' (built in), a folder with images/ and "
            f"{INSTANCES_FOLDER}/ (one 16-bit label image per image, 0 = background), or a folder with images/ and a COCO JSON file."
        )
    if not (root / INSTANCES_FOLDER).is_dir() and coco_file(root) is not None:
        return coco_dataset(root, **options)
    return instance_dataset(root, **options)


def coco_file(root: Path) -> Path | None:
    """The one COCO annotation file of a folder: `root/*.json` or `root/annotations/*.json` (None when there is none)."""
    found = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    found = [path for path in found if path.name != "results.json"]
    if len(found) > 1:
        raise DataError(
            f"{str(root)!r} holds {len(found)} JSON files ({', '.join(path.name for path in found[:4])}); "
            "keep one COCO annotation file per dataset folder, or call coco_dataset(root, annotations=...)."
        )
    return found[0] if found else None


def coco_dataset(
    root: str | Path,
    annotations: str | Path | None = None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> InstanceDataset:
    """Reads instances from a COCO JSON file (polygons or RLE, through pycocotools) and its images.

    Images are looked up by each entry's `file_name` in `root/images/`, else in `root`. Categories become
    classes 1..K in the order of their ids (0 is background); crowd regions (`iscrowd`) are left out, as COCO's
    evaluation leaves them out. `root/split.txt` (lines `train|val|test <stem>`) fixes the split, else a
    seeded split is made.

    Args:
        root: The dataset folder.
        annotations: The JSON file; None finds the one in `root` or `root/annotations/`.
        val_fraction: Share of the training images held out for validation (when split.txt has no val lines).
        test_fraction: Share held out for testing when there is no split.txt.
        seed: Seed of the split.

    Raises:
        DataError: No JSON file, a JSON file that is not COCO, or an image the file names but the folder lacks.

    Example:
        >>> data = coco_dataset("cells", annotations="cells/annotations.json")  # cells/images/*.png
        >>> image, instances = data.load(data.ids("train")[0])
    """
    root = Path(root)
    path = Path(annotations) if annotations is not None else coco_file(root)
    if path is None or not path.is_file():
        raise DataError(f"No COCO annotation file {str(path or root / 'annotations.json')!r}; give the JSON file with annotations=.")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its loading times
            coco = COCO(str(path))
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{str(path)!r} is not a COCO annotation file ({error!r}); it needs images, annotations and categories.") from None
    category_ids = sorted(coco.getCatIds())
    classes = {category_id: index + 1 for index, category_id in enumerate(category_ids)}
    image_folder = root / "images" if (root / "images").is_dir() else root
    entries: dict[str, dict] = {}
    for entry in coco.loadImgs(sorted(coco.getImgIds())):
        stem = Path(entry["file_name"]).stem
        if stem in entries:
            raise DataError(f"{str(path)!r} names two images with the stem {stem!r}; give each image its own file name.")
        if not (image_folder / entry["file_name"]).is_file():
            raise DataError(f"{str(path)!r} names image {entry['file_name']!r}, which is not in {str(image_folder)!r}.")
        entries[stem] = entry
    if not entries:
        raise DataError(f"{str(path)!r} lists no images.")
    splits = _read_or_make_split(root, sorted(entries), val_fraction, test_fraction, seed)

    def reader(stem: str) -> tuple[np.ndarray, Instances]:
        entry = entries[stem]
        image = read_image(image_folder / entry["file_name"])
        if image.shape[:2] != (entry["height"], entry["width"]):
            raise DataError(f"Image {entry['file_name']!r} is {image.shape[0]}x{image.shape[1]} but {str(path)!r} says {entry['height']}x{entry['width']}.")
        objects = [item for item in coco.loadAnns(coco.getAnnIds(imgIds=entry["id"])) if not item.get("iscrowd", 0)]
        masks = np.zeros((len(objects), *image.shape[:2]), dtype=bool)
        for index, item in enumerate(objects):
            masks[index] = coco.annToMask(item).astype(bool)
        return image, instances_from_masks(masks, np.array([classes[item["category_id"]] for item in objects], dtype=np.int32))

    first_image = read_image(image_folder / next(iter(entries.values()))["file_name"])
    return InstanceDataset(root.name, len(category_ids) + 1, first_image.shape[-1], splits, reader)


def instance_dataset(root: str | Path, val_fraction: float = 0.0, test_fraction: float = 0.15, seed: int = 0) -> InstanceDataset:
    """Reads `root/images/` and `root/instances/` (and `root/masks/` for classes when present).

    Args:
        root: The dataset folder.
        val_fraction: Share of the training images held out for validation (when split.txt has no val lines).
        test_fraction: Share held out for testing when there is no split.txt.
        seed: Seed of the split.

    Raises:
        DataError: `instances/` is missing, a file has no partner, or an instance image is unusable (named).

    Example:
        >>> data = instance_dataset("cells")  # cells/images/a.png, cells/instances/a.png
        >>> image, instances = data.load("a")
        >>> instances.boxes.shape[1]
        4
    """
    root = Path(root)
    if not (root / INSTANCES_FOLDER).is_dir():
        raise DataError(
            f"{str(root)!r} has no {INSTANCES_FOLDER}/ folder; instance models need one label image per image "
            "(16-bit PNG, one id per object, 0 = background) under the same file stem."
        )
    images = _files_by_stem(root / "images", "images")
    labels = _files_by_stem(root / INSTANCES_FOLDER, "instance images")
    masks = _files_by_stem(root / "masks", "masks") if (root / "masks").is_dir() else None
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DataError(
            f"{len(missing)} image(s) have no instance image in {str(root / INSTANCES_FOLDER)!r}, e.g. "
            f"{images[missing[0]].name}. Add them or remove the images."
        )
    splits = _read_or_make_split(root, sorted(images), val_fraction, test_fraction, seed)
    num_classes, binary_255 = 2, False
    if masks is not None:  # 0/255 class masks are one foreground class, not 256 classes
        values = mask_values(path for stem, path in masks.items() if stem in images)
        num_classes, binary_255 = classes_from_values(values, None, None, root.name)
    first_image = read_image(images[sorted(images)[0]])

    def reader(stem: str) -> tuple[np.ndarray, Instances]:
        image = read_image(images[stem])
        class_mask = None
        if masks is not None and stem in masks:
            class_mask = read_mask(masks[stem])
            if binary_255:
                class_mask = np.where(class_mask == 255, 1, class_mask)
        return image, read_instances(labels[stem], image.shape[:2], class_mask)

    return InstanceDataset(root.name, num_classes, first_image.shape[-1], splits, reader)


def augment_instances(image: np.ndarray, instances: Instances, rng: np.random.Generator) -> tuple[np.ndarray, Instances]:
    """Random flips, 90-degree rotations and brightness/contrast; masks move with the image, boxes are recomputed.

    Example:
        >>> image, instances = augment_instances(image, instances, np.random.default_rng(0))
    """
    masks = instances.masks
    turns = int(rng.integers(4))
    image, masks = np.rot90(image, turns, axes=(0, 1)), np.rot90(masks, turns, axes=(1, 2))
    if rng.random() < 0.5:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    contrast = rng.uniform(0.8, 1.2)
    brightness = rng.uniform(-0.1, 0.1)
    image = np.clip((image - image.mean()) * contrast + image.mean() + brightness, 0.0, 1.0).astype(np.float32)
    return np.ascontiguousarray(image), instances_from_masks(np.ascontiguousarray(masks), instances.class_ids)

