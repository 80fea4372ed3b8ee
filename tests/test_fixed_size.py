"""Models built for one input size (keras-hub segmenters built with `image_shape`) on data of other sizes:
predicted tile by tile, trained on patches of their size, measured at their size."""

import keras
import numpy as np
import pytest

import segprune
from segprune.cli import main
from segprune.data import BatchConfig, synthetic_dataset
from segprune.inference import fixed_input_size, measurement_size, predict_classes, predict_maps
from segprune.training import TrainConfig


def _pointwise(height: int | None, width: int | None) -> keras.Model:
    """A 1x1 convolution: its output at a pixel depends on that pixel alone, so tiling cannot change it."""
    inputs = keras.Input((height, width, 3))
    return keras.Model(inputs, keras.layers.Conv2D(4, 1, activation="softmax", name="head")(inputs))


def _small_fixed(size: int, channels: int, num_classes: int) -> keras.Model:
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    skip = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(skip)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Concatenate()([keras.layers.UpSampling2D()(x), skip])
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1, activation="softmax")(x))


@pytest.mark.parametrize("built_for", [(16, 16), (8, 12)])  # not square: height and width are not swapped
@pytest.mark.parametrize("shape", [(40, 24), (16, 16), (9, 30), (5, 5)])
def test_a_model_built_for_one_size_predicts_any_size_tile_by_tile_as_the_same_layers_would_whole(shape, built_for):
    fixed, free = _pointwise(*built_for), _pointwise(None, None)
    free.set_weights(fixed.get_weights())
    images = [np.random.default_rng(seed).random((*shape, 3)).astype(np.float32) for seed in range(3)]
    tiled = predict_maps(fixed, images, batch_size=2)
    for image, maps in zip(images, tiled):
        assert maps.shape == (*shape, 4)
        np.testing.assert_allclose(maps, np.asarray(free.predict_on_batch(image[None]))[0], atol=1e-6)
    assert [classes.shape for classes in predict_classes(fixed, images)] == [shape] * 3


def test_measured_at_the_size_it_was_built_for_and_refused_at_another():
    assert fixed_input_size(_pointwise(16, 16)) == (16, 16) and fixed_input_size(_pointwise(None, None)) is None
    assert measurement_size(_pointwise(16, 16)) == (16, 16) and measurement_size(_pointwise(None, None)) == (256, 256)
    assert measurement_size(_pointwise(None, None), 64) == (64, 64) and measurement_size(_pointwise(16, 16), 16) == (16, 16)
    assert measurement_size(_pointwise(None, None), (32, 64)) == (32, 64) and measurement_size(_pointwise(None, None), "32x64") == (32, 64)
    assert measurement_size(_pointwise(16, 24)) == (16, 24) and measurement_size(_pointwise(16, 24), (16, 24)) == (16, 24)
    with pytest.raises(ValueError, match="built for 16x16 inputs, so it cannot be measured at 64x64; leave the image size out"):
        measurement_size(_pointwise(16, 16), 64)
    with pytest.raises(ValueError, match="built for 16x24 inputs, so it cannot be measured at 24x16; leave the image size out \\(or pass 16x24\\)"):
        measurement_size(_pointwise(16, 24), (24, 16))
    with pytest.raises(ValueError, match="built for inputs of height 32 and width None; segprune needs both fixed or neither"):
        predict_classes(_pointwise(32, None), [np.zeros((64, 64, 3), np.float32)])


def test_the_sweep_measures_a_model_at_the_size_it_was_built_for(tmp_path):
    from segprune.experiments import SweepConfig, run_sweep

    data = synthetic_dataset(num_train=4, num_val=2, num_test=2, image_size=48, channels=1, seed=0)
    model = _small_fixed(32, 1, data.num_classes)
    rows = run_sweep(model, data, tmp_path, SweepConfig(methods=("classical-otsu",)))  # the dense model exported and timed at 32
    dense = next(row for row in rows if row["method"] == "dense")
    assert dense["macs_ratio"] == 1.0 and dense["latency_ms"] > 0  # at 256 its MACs could not be counted nor could it export


def test_a_model_built_for_32_pixels_prunes_fine_tunes_and_evaluates_on_64_pixel_tiles(tmp_path, capsys):
    data = synthetic_dataset(num_train=4, num_val=2, num_test=2, image_size=64, channels=1, seed=0)
    model = _small_fixed(32, 1, data.num_classes)
    config = TrainConfig(batches=BatchConfig(batch_size=2, image_size=128, samples_per_epoch=4), patience=None)  # 128: overridden
    result = segprune.prune(model, "l1", target="flops=0.5", data=data, finetune_epochs=1, train_config=config, seed=0)
    assert result.summary.input_shape[:2] == (32, 32) and result.summary.macs_ratio <= 0.5
    assert fixed_input_size(result.model) == (32, 32)
    assert 0.0 <= segprune.evaluate(result.model, data, "test").dice <= 1.0

    source, out = tmp_path / "fixed.keras", tmp_path / "pruned.keras"
    model.save(source)
    assert main(["prune", str(source), "--method", "l1", "--target", "flops=0.5", "--out", str(out)]) == 0
    assert "MACs at 32x32" in " ".join(capsys.readouterr().out.split())
    assert main(["prune", str(source), "--method", "l1", "--target", "flops=0.5", "--image-size", "64", "--out", str(out)]) == 2
    assert "cannot be measured at 64x64" in capsys.readouterr().err


def test_benchmark_times_models_at_the_size_they_were_built_for_and_refuses_two_sizes(tmp_path):
    from segprune.runtime.benchmark import benchmark_models

    paths = {name: tmp_path / f"{name}.keras" for name in ("fixed16", "free", "fixed8")}
    _pointwise(16, 16).save(paths["fixed16"])
    _pointwise(None, None).save(paths["free"])
    _pointwise(8, 8).save(paths["fixed8"])
    results = benchmark_models([paths["fixed16"], paths["free"]], runtime="keras", rounds=2)
    assert [result.image_size for result in results] == [(16, 16), (16, 16)]
    assert benchmark_models([paths["free"]], runtime="keras", rounds=2)[0].image_size == (256, 256)
    with pytest.raises(ValueError, match="built for different input sizes \\(fixed16.keras 16x16, fixed8.keras 8x8\\)"):
        benchmark_models([paths["fixed16"], paths["fixed8"]], runtime="keras", rounds=2)
    with pytest.raises(ValueError, match="cannot be measured at 32x32"):
        benchmark_models([paths["fixed16"]], runtime="keras", image_size=32, rounds=2)


@pytest.mark.parametrize("command", [["prune", "--method", "l1", "--target", "flops=0.5"], ["evaluate", "--data", "synthetic"], ["benchmark"]])
def test_a_channels_first_model_is_refused_as_such_not_read_as_a_size(command, tmp_path, capsys):
    inputs = keras.Input((1, 32, 32))
    x = keras.layers.Conv2D(8, 3, padding="same", data_format="channels_first", name="first_conv")(inputs)
    path = tmp_path / "channels_first.keras"
    keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid", data_format="channels_first")(x)).save(path)
    out = ["--out", str(tmp_path / "out.keras")] if command[0] == "prune" else []
    assert main([command[0], str(path), *command[1:], *out]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "'first_conv' (Conv2D) of model" in error and "uses data_format='channels_first'" in error and "Build the model channels-last" in error


@pytest.mark.parametrize("fixed_batch", [False, True])
def test_stitched_tiles_rebuild_each_image_and_a_fixed_batch_is_always_full(fixed_batch):
    from segprune.inference import stitch_tiles

    images = [np.random.default_rng(seed).random(shape).astype(np.float32) for seed, shape in enumerate([(20, 13, 2), (7, 7, 2), (9, 30, 2)])]
    seen = []

    def identity(batch):
        seen.append(len(batch))
        return batch

    stitched = stitch_tiles(identity, images, (8, 6), batch_size=4, fixed_batch=fixed_batch)
    for image, result in zip(images, stitched):
        np.testing.assert_array_equal(result, image)
    tiles = 3 * 3 + 1 * 2 + 2 * 5  # rows x columns of tiles per image, the last of each moved back to the edge
    assert seen == ([4] * 6 if fixed_batch else [4] * 5 + [1]) and tiles == 21
