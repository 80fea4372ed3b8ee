"""Data from Python (NumPy arrays, a tf.data.Dataset, a keras.utils.PyDataset) give what a folder of the same images gives."""

import pickle

import keras
import numpy as np
import pytest
from PIL import Image

import segprune
from segprune.data import BatchConfig, DataError, SegmentationDataset, as_dataset, folder_dataset, from_arrays, load_data
from segprune.models import unet
from segprune.training import TrainConfig
from segprune.training.run_state import data_fingerprint, run_folder
from tests.graph.harness import built_with_numpy_weights

QUICK = TrainConfig(batches=BatchConfig(batch_size=4, image_size=32, samples_per_epoch=8), patience=None)


def discs(count: int = 8, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB images of a bright disc on noise, and the disc as class 1."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    images = (rng.random((count, size, size, 3)) * 90).astype(np.uint8)
    masks = np.zeros((count, size, size), np.uint8)
    for index in range(count):
        centre, radius = rng.integers(8, size - 8, 2), rng.integers(4, 8)
        masks[index] = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
        images[index][masks[index] == 1] += 150
    return images, masks


class Batches(keras.utils.PyDataset):
    def __init__(self, images, masks, batch_size):
        super().__init__()
        self.images, self.masks, self.batch_size = images, masks, batch_size

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.images[part], self.masks[part, ..., None]


@pytest.fixture(scope="module")
def arrays():
    return discs()


@pytest.fixture(scope="module")
def folder(arrays, tmp_path_factory):
    """The same images as PNG files, named by the ids the arrays get (so both split alike)."""
    images, masks = arrays
    root = tmp_path_factory.mktemp("discs")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for sample_id in sorted(from_arrays(images, masks).reader.samples):
        index = int(sample_id.split("-")[0])
        Image.fromarray(images[index]).save(root / "images" / f"{sample_id}.png")
        Image.fromarray(masks[index]).save(root / "masks" / f"{sample_id}.png")
    return folder_dataset(root)


@pytest.fixture(scope="module")
def dense():
    return built_with_numpy_weights(lambda: unet(num_classes=2, input_channels=3, base_filters=16, depth=1))


def prune_and_score(dense, data, folder):
    """The acceptance call (`prune(model, "l1", target="flops=0.5", data=..., finetune_epochs=2)`), kept small:
    its fine-tune's loss and validation Dice per epoch, and the pruned model's test Dice on the folder."""
    result = segprune.prune(dense, "l1", target="flops=0.5", data=data, finetune_epochs=2, train_config=QUICK, seed=0, progress=False)
    history = [(record.loss, record.val_dice) for record in result.training[0].history]
    return history, segprune.evaluate(result.model, folder, "test").dice, result.summary.macs_ratio, result.model


@pytest.fixture(scope="module")
def on_folder(dense, folder):
    return prune_and_score(dense, folder, folder)


@pytest.mark.parametrize("form", ["tf.data", pytest.param("arrays", marks=pytest.mark.exhaustive)])
def test_prune_on_python_data_fine_tunes_and_evaluates_as_on_a_folder_of_the_same_images(arrays, dense, folder, on_folder, form):
    """Arrays reach the same dataset as tf.data (`test_every_form_gives_the_folder_s_samples_and_split`), so the
    default suite prunes once from tf.data; `make test-all` prunes from arrays too."""
    import tensorflow as tf

    images, masks = arrays
    data = tf.data.Dataset.from_tensor_slices((images, masks[..., None])).batch(3) if form == "tf.data" else (images, masks)
    history, dice, macs_ratio, pruned = prune_and_score(dense, data, folder)
    assert on_folder[2] <= 0.5 and len(on_folder[0]) == 2
    assert (history, dice, macs_ratio) == on_folder[:3]
    # arrays handed to evaluate are scored whole: the folder's test split, given as arrays, scores alike
    test = [int(sample_id.split("-")[0]) for sample_id in folder.ids("test")]
    assert segprune.evaluate(pruned, (images[test], masks[test])).dice == pytest.approx(dice)


def test_every_form_gives_the_folder_s_samples_and_split(arrays, folder):
    import tensorflow as tf

    images, masks = arrays
    forms = [
        (images, masks[..., None]),
        tf.data.Dataset.from_tensor_slices((images, masks)).batch(5),
        Batches(images, masks, 3),
    ]
    for form in forms:
        data = as_dataset(form)
        assert data.splits == folder.splits and data.num_classes == 2 and data.image_channels == 3
        sample_id = data.ids("val")[0]
        for got, want in zip(data.load(sample_id), folder.load(sample_id)):
            np.testing.assert_array_equal(got, want)


def test_splits_given_as_a_dict_are_kept_and_the_missing_one_carved(arrays):
    images, masks = arrays
    data = as_dataset({"train": (images[:6], masks[:6]), "test": Batches(images[6:], masks[6:], 2)})
    assert [len(data.ids(split)) for split in ("train", "val", "test")] == [5, 1, 2]
    test_image = data.load(data.ids("test")[0])[0]
    np.testing.assert_array_equal(test_image, images[6] / np.float32(255))


def test_masks_infer_classes_as_a_folder_s_do(arrays):
    images, masks = arrays
    binary = from_arrays(images, masks * 255)
    assert binary.num_classes == 2 and binary.notes and binary.load(binary.ids("train")[0])[1].max() == 1
    voc_like = np.where(masks == 1, 255, masks + (np.arange(32) % 3)[None, None, :]).astype(np.uint8)
    with pytest.raises(DataError, match="ignore_index=255"):
        from_arrays(images, voc_like)
    assert from_arrays(images, voc_like, ignore_index=255).num_classes == 3
    assert from_arrays(images, masks.astype(np.float32)).num_classes == 2  # whole numbers in a float mask are indices


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda x, y: (x, y[:7]), "Images hold 8 samples but masks 7"),
        (lambda x, y: (x[0], y[0]), r"Images have shape \(32, 32, 3\); expected \(N, H, W, C\).*images\[None\]"),
        (lambda x, y: (x, y[:, None]), r"Masks have shape \(8, 1, 32, 32\)"),
        (lambda x, y: (x, y[:, :16]), "Images are 32x32 but masks 16x32"),
        (lambda x, y: (x, y * np.float32(0.5)), r"Masks are float32 with non-integer values \(e.g. 0.5\)"),
        (lambda x, y: (x, np.eye(2, dtype=np.uint8)[y]), r"one-hot .* masks.argmax\(-1\)"),
        (lambda x, y: (x.astype(np.float32), y), r"float with values in \[0, 2\d\d\].*divide them by 255"),
        (lambda x, y: (x.astype(np.int64), y), r"pixel type int64.*astype\(np.uint8\)"),
        (lambda x, y: [x], "got builtins.list"),
        (lambda x, y: (x, y + 2), "class index 3, but there are 2 classes"),
    ],
)
def test_bad_arrays_are_refused_in_one_line_naming_what_is_wrong(arrays, bad, message):
    with pytest.raises(DataError, match=message) as error:
        as_dataset(bad(*arrays), num_classes=2)
    assert "\n" not in str(error.value)


def test_batches_that_cannot_be_read_once_are_refused_with_the_fix(arrays):
    import tensorflow as tf

    images, masks = arrays
    unbatched = tf.data.Dataset.from_tensor_slices((images, masks))
    with pytest.raises(DataError, match=r"repeats forever.*\.repeat\(\)"):
        as_dataset(unbatched.batch(2).repeat())
    with pytest.raises(DataError, match=r"batch 0 of the tf.data.Dataset .*\.batch\(8\)"):
        as_dataset(unbatched)
    with pytest.raises(DataError, match=r"more than .* GiB \(read 3 images so far\).*folder"):
        as_dataset(unbatched.batch(3), max_bytes=images[:2].nbytes)


def test_python_data_travel_to_worker_processes_and_are_fingerprinted_by_their_pixels(arrays):
    images, masks = arrays
    data = from_arrays(images, masks)
    copy = pickle.loads(pickle.dumps(data))
    assert load_data(copy) is copy and copy.splits == data.splits
    np.testing.assert_array_equal(copy.load(data.ids("test")[0])[1], data.load(data.ids("test")[0])[1])
    assert data_fingerprint(from_arrays(images.copy(), masks.copy())) == data_fingerprint(data)
    changed = images.copy()
    changed[3, 0, 0, 0] ^= 1
    assert data_fingerprint(from_arrays(changed, masks)) != data_fingerprint(data)


def test_resume_refuses_a_reader_it_cannot_fingerprint(arrays, tmp_path):
    images, masks = arrays
    own = SegmentationDataset("mine", 2, 3, {"train": ["a"], "val": ["b"]}, reader=lambda sample_id: (images[0], masks[0]))
    checkpoint = tmp_path / "pruned.keras"
    run_folder(checkpoint).mkdir()  # an interrupted run's state
    model = unet(num_classes=2, input_channels=3, base_filters=16, depth=2)
    with pytest.raises(DataError, match=r"Cannot resume on dataset 'mine': its reader is your own .*as_dataset"):
        segprune.sparsify(model, sparsity=0.5, data=own, checkpoint_path=checkpoint, resume=True, progress=False)


@pytest.mark.backends
def test_arrays_and_a_py_dataset_need_no_tensorflow_to_be_read_and_scored(arrays):
    images, masks = arrays
    data = as_dataset(Batches(images, masks, 3))
    assert data.splits == from_arrays(images, masks).splits
    model = built_with_numpy_weights(lambda: unet(num_classes=2, input_channels=3, base_filters=8, depth=1))
    scores = segprune.evaluate(model, (images[:2], masks[:2]))
    assert scores.num_images == 2 and 0.0 <= scores.dice <= 1.0
