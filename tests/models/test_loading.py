"""Loading users' model files: Keras 3 .keras, Keras 2 .h5, and every kind of bad file."""

import hashlib
import zipfile

import keras
import numpy as np
import pytest

from segprune import evaluate, load_model, train
from segprune.data import BatchConfig
from segprune.models import ModelFileError, unet
from segprune.training import TrainConfig
from tests.conftest import DATA_DIR

LEGACY_H5 = DATA_DIR / "legacy_unet_keras2.h5"


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_keras2_h5_loads_evaluates_and_trains_further(make_folder_dataset):
    before = _digest(LEGACY_H5)
    model = load_model(LEGACY_H5)
    assert _digest(LEGACY_H5) == before, "the user's file must not be modified"
    assert all(layer.trainable for layer in model.layers)
    assert isinstance(model.get_layer("conv2d_transpose"), keras.layers.Conv2DTranspose)

    data = segprune_data(make_folder_dataset)
    scores = evaluate(model, data, "test")
    assert 0.0 <= scores.dice <= 1.0
    weights_before = [w.copy() for w in model.get_weights()]
    result = train(model, data, epochs=1, config=TrainConfig(batches=BatchConfig(batch_size=2, image_size=32)))
    assert len(result.history) == 1
    assert any(not np.array_equal(a, b) for a, b in zip(weights_before, model.get_weights()))


def segprune_data(make_folder_dataset):
    from segprune.data import folder_dataset

    return folder_dataset(make_folder_dataset(count=6), val_fraction=0.2, test_fraction=0.2)


def test_keras_file_round_trip(tmp_path):
    model = unet(base_filters=4, depth=2)
    model.layers[1].trainable = False
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = load_model(path)
    assert all(layer.trainable for layer in loaded.layers)
    sample = np.random.rand(1, 16, 16, 1).astype("float32")
    np.testing.assert_allclose(loaded.predict(sample, verbose=0), model.predict(sample, verbose=0), atol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model file"):
        load_model(tmp_path / "absent.keras")


def test_corrupt_keras_file(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ModelFileError, match="not a valid .keras file"):
        load_model(path)


def test_truncated_keras_file(tmp_path):
    good = tmp_path / "good.keras"
    unet(base_filters=4, depth=2).save(good)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError):
        load_model(truncated)


def test_corrupt_h5_file(tmp_path):
    path = tmp_path / "broken.h5"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not a valid HDF5"):
        load_model(path)


def test_weights_only_h5(tmp_path):
    path = tmp_path / "unet.weights.h5"
    unet(base_filters=4, depth=2).save_weights(path)
    with pytest.raises(ModelFileError, match="weights only"):
        load_model(path)


def test_saved_model_directory(tmp_path):
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ModelFileError, match="SavedModel"):
        load_model(folder)


def test_subclassed_model_file(tmp_path):
    path = tmp_path / "subclassed.keras"
    config = '{"class_name": "MyUNet", "registered_name": "custom>MyUNet", "config": {}}'
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config)
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ModelFileError, match="subclassed"):
        load_model(path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx")
    with pytest.raises(ModelFileError, match="unsupported suffix"):
        load_model(path)


def _lambda_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 1, name="conv")(inputs)
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0, name="double")(x))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layers_need_an_explicit_opt_in(tmp_path, suffix):
    model = _lambda_model()
    path = tmp_path / f"lambda{suffix}"
    model.save(path)
    with pytest.raises(ModelFileError, match="Lambda layer.*arbitrary code.*safe_mode=False"):
        load_model(path)
    loaded = load_model(path, safe_mode=False)
    sample = np.random.default_rng(0).random((1, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(sample, verbose=0), model.predict(sample, verbose=0), atol=1e-6)


class _Doubler(keras.layers.Layer):  # deliberately not registered: the file names it, Keras cannot find it
    def call(self, x):
        return x * 2.0


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_custom_objects_are_passed_to_keras(tmp_path, suffix):
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, _Doubler(name="double")(keras.layers.Conv2D(3, 1)(inputs)))
    path = tmp_path / f"custom{suffix}"
    model.save(path)
    with pytest.raises(ModelFileError, match="custom_objects"):
        load_model(path)
    loaded = load_model(path, custom_objects={"_Doubler": _Doubler})
    assert isinstance(loaded.get_layer("double"), _Doubler)
