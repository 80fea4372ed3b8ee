"""Rectangular input sizes (issue 26 item 3): `--image-size HxW`, a model built for HxW read as (height, width), budgets,
a latency search's table, the benchmark and the reports at that size."""

import json

import keras
import numpy as np
import pytest

import segprune
from segprune.cli import main
from segprune.cost import flops
from segprune.inference import fixed_input_size, measurement_size
from segprune.models import unet
from segprune.runtime.latency import LatencyTable
from segprune.sizes import as_image_size, format_size, parse_image_size
from tests.fixtures import one_error
from tests.graph.harness import assert_prunes_exactly

SIZE = (32, 64)  # height x width: a street scene's 512x1024 in miniature


def _rectangular_unet(num_classes: int, size=SIZE, base_filters: int = 8) -> keras.Model:
    """The U-Net of `segprune.models.unet` built for inputs of exactly `size` (height, width)."""
    config = unet(num_classes=num_classes, input_channels=1, base_filters=base_filters, depth=1).get_config()
    config["layers"][0]["config"]["batch_shape"] = (None, *size, 1)
    return keras.Model.from_config(config)


@pytest.mark.parametrize(("text", "size"), [("256", (256, 256)), ("256x512", (256, 512)), (" 32 X 64 ", (32, 64))])
def test_a_size_is_n_or_height_by_width(text, size):
    assert parse_image_size(text) == as_image_size(text) == size
    assert as_image_size(size) == as_image_size(list(size)) == size and as_image_size(np.int64(size[0]))[0] == size[0]
    assert format_size(size) == f"{size[0]}x{size[1]}" and format_size(64) == "64x64"


@pytest.mark.parametrize("text", ["256*512", "256x", "0x64", "-1", "a", "1x2x3"])
def test_bad_size_text_is_one_argparse_error_showing_both_forms(text, capsys):
    for command in (["prune", "m.keras", "--ratio", "0.5", "--out", "o.keras"], ["benchmark", "m.keras"], ["train"],
                    ["sparsify", "m.keras", "--sparsity", "0.5", "--out", "o.keras"], ["sweep", "--model", "m.keras", "--out", "o"],
                    ["optimize", "m.keras", "--runtime", "openvino", "--out", "o"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--image-size", text])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert f"argument --image-size: takes N or HxW (height x width, positive integers), e.g. 256 or 256x512; got {text!r}" in error


@pytest.mark.parametrize("value", [(32, 64, 1), 2.5, True, (0, 64), "32*64"])
def test_the_api_refuses_a_size_it_cannot_read_before_any_work(value):
    model = unet(num_classes=2, input_channels=1, base_filters=4, depth=1)
    with pytest.raises(ValueError, match="image_size .*(N or|positive)"):
        segprune.prune(model, "l1", ratio=0.5, image_size=value)


def test_a_model_built_for_a_rectangle_is_read_as_height_by_width_and_prunes_exactly():
    model = _rectangular_unet(2)
    assert fixed_input_size(model) == SIZE and measurement_size(model) == SIZE and measurement_size(model, "32x64") == SIZE
    with pytest.raises(ValueError, match="built for 32x64 inputs, so it cannot be measured at 64x32"):
        measurement_size(model, (64, 32))
    pruned = assert_prunes_exactly(model, (*SIZE, 1))
    assert fixed_input_size(pruned) == SIZE


def test_a_flops_budget_is_measured_at_height_by_width_from_the_api_and_the_command_line(tmp_path, capsys):
    model = unet(num_classes=2, input_channels=1, base_filters=8, depth=1)  # takes any size: the size given is the one measured
    result = segprune.prune(model, "l1", target="flops=0.5", image_size=SIZE, round_to=1, progress=False)
    dense, pruned = flops(model, SIZE).macs, flops(result.model, SIZE).macs
    assert result.summary.input_shape[:2] == SIZE and (result.summary.macs_before, result.summary.macs_after) == (dense, pruned)
    assert 0.4 < pruned / dense <= 0.5, "halved at 32x64, as the bisection on the graph traced at 32x64 meant"
    sample = np.random.default_rng(0).random((1, *SIZE, 1)).astype(np.float32)
    assert result.model(sample).shape == model(sample).shape == (1, *SIZE, 1)

    source, out = tmp_path / "rect.keras", tmp_path / "pruned.keras"
    _rectangular_unet(2).save(source)
    assert main(["prune", str(source), "--target", "flops=0.5", "--image-size", "32x64", "--round-to", "1", "--out", str(out)]) == 0
    assert "MACs at 32x64" in " ".join(capsys.readouterr().out.split())
    assert main(["prune", str(source), "--target", "flops=0.5", "--round-to", "1", "--out", str(out)]) == 0  # read from the model
    assert "MACs at 32x64" in " ".join(capsys.readouterr().out.split())
    assert main(["prune", str(source), "--target", "flops=0.5", "--image-size", "64x32", "--out", str(tmp_path / "other.keras")]) == 2
    assert "built for 32x64 inputs, so it cannot be measured at 64x32" in one_error(capsys.readouterr().err)


def _rectangular_convnet(num_classes: int) -> keras.Model:
    """Two 3x3 convolutions of 32 filters and a 1x1 head at 32x64: few groups, so a latency table times few layers."""
    inputs = keras.Input((*SIZE, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1, activation="softmax", name="head")(x))


def test_greedy_meets_a_latency_target_from_a_table_timed_at_height_by_width_on_onnx_runtime(data4, tmp_path, monkeypatch):
    model = _rectangular_convnet(data4.num_classes)
    timed_at = []

    def whole_models(models, image_size, threads, runtime, precision):  # whole models timed: the benchmark test's part
        timed_at.append(image_size)
        # calibration first: a dense time below the layers' sum leaves no untimed remainder, the estimate is the table's alone
        return [1e-6, 1e-7] if len(timed_at) == 1 else [10.0, 6.0]

    monkeypatch.setattr("segprune.search.kinds.time_models", whole_models)
    result = segprune.prune(
        model, "greedy", target="latency=0.7", data=data4, image_size="32x64", folder=tmp_path, iterations=1, candidate_steps=0,
        threads=1, finetune_epochs=0, round_to=4, progress=False,
    )
    assert len(timed_at) >= 2 and set(timed_at) == {SIZE}, "the dense and narrowest models, then the result, timed at 1x32x64"
    assert result.search.resource_fraction <= 0.7 and result.search.measured["latency_fraction"] == 0.6
    assert "1x32x64" in result.search.latency_source and result.summary.input_shape[:2] == SIZE
    table = json.loads((tmp_path / "latency_table.json").read_text())
    assert table["runtime"] == "onnxruntime" and table["image_size"] == "32x64"
    first_layer = [json.loads(key) for key in table["entries"] if json.loads(key)[2][1:3] == list(SIZE)]
    assert first_layer and all(value > 0 for value in table["entries"].values()), "layers timed on ONNX Runtime at their 32x64 shapes"
    header = json.loads((tmp_path / "search.jsonl").read_text().splitlines()[0])
    assert header["settings"]["image_size"] == list(SIZE)
    with pytest.raises(ValueError, match="was timed at 32x64, not 64x32"):
        LatencyTable(path=tmp_path / "latency_table.json", image_size=(64, 32))


def test_benchmark_times_and_counts_models_at_the_rectangle_one_of_them_is_built_for(tmp_path, capsys):
    fixed, free = tmp_path / "fixed.keras", tmp_path / "free.keras"
    model = _rectangular_convnet(2)
    model.save(fixed)
    free_model = keras.Model.from_config({**model.get_config(), "layers": [
        {**layer, "config": {**layer["config"], "batch_shape": (None, None, None, 1)}} if layer["class_name"] == "InputLayer" else layer
        for layer in model.get_config()["layers"]
    ]})
    free_model.save(free)
    assert main(["benchmark", str(fixed), str(free), "--rounds", "2", "--json"]) == 0  # the size read from the fixed model
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(row["runtime"], row["image_size"], row["static_shape"]) for row in rows] == [("onnxruntime", "32x64", True)] * 2
    assert [row["macs"] for row in rows] == [flops(model, SIZE).macs] * 2 and all(row["latency_ms"] > 0 for row in rows)
    assert main(["benchmark", str(fixed), "--image-size", "64x32", "--runtime", "keras", "--rounds", "1"]) == 2
    assert "built for 32x64 inputs, so it cannot be measured at 64x32" in one_error(capsys.readouterr().err)


def test_reports_print_height_by_width_and_read_older_square_rows(data4):
    from segprune.report.html import measurement_note

    assert "MACs and latency per 1x32x64 input image" in measurement_note([{"method": "dense", "image_size": "32x64"}], data4)
    assert "MACs and latency per 1x128x128 input image" in measurement_note([{"method": "dense", "image_size": 128}], data4)


def test_training_cuts_rectangular_patches_and_never_turns_them(data4):
    from segprune.data import BatchConfig, TrainingBatches

    with pytest.raises(ValueError, match="image_size must be >= 8"):
        BatchConfig(image_size=(4, 64))
    batches = TrainingBatches(data4, "train", 1, BatchConfig(batch_size=4, image_size=(16, 40), samples_per_epoch=8))
    for index in range(len(batches)):  # a quarter turn would make a 40x16 patch: rotations are for square patches only
        images, masks = batches[index]
        assert images.shape == (4, 16, 40, 1) and masks.shape[:3] == (4, 16, 40)
