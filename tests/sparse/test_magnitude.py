"""Magnitude pruning: masks hold through optimizer steps and a mid-training save/load; the stripped model
is plain and its measured sparsity is the reported one."""

import zipfile

import keras
import numpy as np
import pytest

from segprune.data import BatchConfig
from segprune.models import unet
from segprune.sparse import ConstantSparsity, PolynomialDecay, magnitude_prune, sparsity_summary
from segprune.sparse.magnitude import MaskUpdater, optimizer_slots, with_masks
from segprune.sparse.masks import prunable_kernels
from segprune.training import TrainConfig

CONFIG = TrainConfig(patience=None, batches=BatchConfig(batch_size=4, image_size=32))  # the data are 32x32: no padding to 128


def _xy(data16):
    pairs = [data16.load(sample_id) for sample_id in data16.ids("train")[:8]]
    images = np.stack([image[..., :1] for image, _ in pairs]).astype("float32")
    masks = np.stack([mask for _, mask in pairs])
    return images, keras.utils.to_categorical(masks, data16.num_classes)


def _masked_positions(sparse):
    return [keras.ops.convert_to_numpy(sparse.gate_variables[s.gate]) == 0 for s in sparse.sites]


def _assert_masked_zero(sparse, with_slots=True):
    for variable, masked in zip(sparse.site_variables, _masked_positions(sparse)):
        assert masked.any()
        assert np.all(keras.ops.convert_to_numpy(variable)[masked] == 0), variable.path
        if with_slots:
            slots = optimizer_slots(sparse.optimizer, variable)
            assert len(slots) == 2  # Adam's two moments
            for slot in slots:
                assert np.all(keras.ops.convert_to_numpy(slot)[masked] == 0), slot.path


def _compiled(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    return model


def test_masked_weights_and_their_adam_moments_stay_exactly_zero(data16):
    model = unet(num_classes=data16.num_classes, input_channels=1, base_filters=8, depth=2)
    sparse = _compiled(with_masks(model, prunable_kernels(model)))
    updater = MaskUpdater(sparse, ConstantSparsity(0.7, begin_step=2, end_step=2, frequency=1))
    x, y = _xy(data16)
    sparse.fit(x, y, batch_size=2, epochs=3, callbacks=[updater], verbose=0)  # 12 steps, masks set at step 2
    assert [step for step, _ in updater.updates] == [2]
    _assert_masked_zero(sparse)


def test_masks_survive_a_save_and_reload_in_the_middle_of_training(data16, tmp_path):
    model = unet(num_classes=data16.num_classes, input_channels=1, base_filters=8, depth=2)
    sparse = _compiled(with_masks(model, prunable_kernels(model)))
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=20, frequency=4)
    x, y = _xy(data16)
    sparse.fit(x, y, batch_size=2, epochs=2, callbacks=[MaskUpdater(sparse, schedule)], verbose=0)  # to step 8
    path = tmp_path / "mid.keras"
    sparse.save(path)
    restored = keras.saving.load_model(path)
    assert restored.optimizer is not None and int(restored.optimizer.iterations.numpy()) == 8
    np.testing.assert_array_equal(restored.predict(x, verbose=0), sparse.predict(x, verbose=0))
    _assert_masked_zero(restored)
    updater = MaskUpdater(restored, schedule)
    restored.fit(x, y, batch_size=2, epochs=4, callbacks=[updater], verbose=0)  # steps 8..23
    assert updater.updates[-1] == (20, 0.8)
    _assert_masked_zero(restored)
    masks = _masked_positions(restored)
    assert sum(m.sum() for m in masks) / sum(m.size for m in masks) == pytest.approx(0.8, abs=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("schedule,pattern", [("polynomial", None), ("constant", "2:4")])
def test_magnitude_prune_returns_a_plain_model_whose_measured_sparsity_is_the_reported_one(data16, tmp_path, schedule, pattern):
    """Per-layer ranking, so that every kernel's own sparsity can be checked."""
    model = unet(num_classes=data16.num_classes, input_channels=1, base_filters=8, depth=2)
    before = [w.copy() for w in model.get_weights()]
    result = magnitude_prune(model, data16, 0.75, epochs=3, schedule=schedule, ranking="layer", pattern=pattern, config=CONFIG)
    summary = sparsity_summary(result.model, input_shape=(64, 64))
    assert summary.sparsity == pytest.approx(result.sparsity, abs=1e-12)
    expected = 0.75 if pattern is None else 0.5
    fits = [layer for layer in summary.layers if layer.layer != "enc0a_conv"]  # 2:4 cannot group the single input channel
    assert sum(layer.zeros for layer in fits) / sum(layer.size for layer in fits) == pytest.approx(expected, abs=2e-3)
    assert [len(result.trajectory), result.trajectory[-1]["sparsity"]] == [3, pytest.approx(result.sparsity)]
    assert summary.macs_if_zeros_skipped < summary.total_macs
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the input model is untouched"
    path = tmp_path / "sparse.keras"
    result.model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert "segprune" not in archive.read("config.json").decode()
    reloaded = keras.saving.load_model(path, compile=False)
    assert type(reloaded).__name__ == "Functional"
    assert sparsity_summary(reloaded, input_shape=(64, 64)).sparsity == pytest.approx(result.sparsity)


def test_global_block_ranking_runs_end_to_end(data16):
    model = unet(num_classes=data16.num_classes, input_channels=1, base_filters=8, depth=2)
    result = magnitude_prune(model, data16, 0.5, epochs=1, schedule="constant", ranking="global", pattern="block:1x4", config=CONFIG)
    assert 0.4 < result.sparsity < 0.6
