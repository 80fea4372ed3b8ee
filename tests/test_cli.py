"""The `segprune` command end to end on small data: train, evaluate --json, errors, help."""

import json

import keras
import pytest

from segprune import evaluate, load_model
from segprune.cli import main
from segprune.data import load_data


@pytest.mark.slow
def test_train_then_evaluate_json(make_folder_dataset, tmp_path, capsys):
    root = make_folder_dataset(count=8)
    out = tmp_path / "runs" / "unet.keras"
    code = main(["train", "--data", str(root), "--model", "unet", "--epochs", "2", "--image-size", "32",
                 "--base-filters", "4", "--out", str(out)])
    assert code == 0
    trained = keras.saving.load_model(out, compile=False)
    assert trained.input_shape[-1] == 1 and trained.get_layer(index=1).filters == 4, "the U-Net asked for: grey tiles, 4 base filters"
    captured = capsys.readouterr()
    assert "epoch   2/2" in captured.err
    assert "test Dice" in captured.out

    code = main(["evaluate", str(out), str(out), "--data", str(root), "--split", "test", "--json"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    rows = [json.loads(line) for line in lines]
    assert {"model", "dice", "iou", "pixel_accuracy", "params"} <= set(rows[0]) and rows[0] == rows[1]
    model, expected = load_model(out), evaluate(load_model(out), load_data(str(root)), "test")
    assert rows[0]["dice"] == pytest.approx(expected.dice) and rows[0]["iou"] == pytest.approx(expected.iou)
    assert rows[0]["params"] == model.count_params()


def test_evaluate_table(make_folder_dataset, tmp_path, capsys):
    from tests.conftest import DATA_DIR

    root = make_folder_dataset(count=6)
    legacy = DATA_DIR / "legacy_unet_keras2.h5"
    assert main(["evaluate", str(legacy), "--data", str(root)]) == 0
    table = capsys.readouterr().out
    model = load_model(legacy)
    expected = evaluate(model, load_data(str(root)), "test")
    assert "pixel_accuracy" in table
    for figure in (f"{expected.dice:.4f}", f"{expected.iou:.4f}", f"{expected.pixel_accuracy:.4f}", f"{model.count_params():,}"):
        assert figure in table, (figure, table)


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["evaluate", "missing.keras", "--data", "synthetic"], "No model file"),
        (["evaluate", "x.keras", "--data", "/no/such/folder"], "No dataset"),
        (["train", "--out", "model.h5", "--epochs", "1"], "must end in .keras"),
        # the target is read before the model: no load, and no "state in OUT.resume" line first
        (["prune", "missing.keras", "--method", "l1", "--target", "flops=1.5", "--out", "out.keras"], "must be in (0, 1], got 1.5"),
    ],
)
def test_errors_exit_2_with_a_message(arguments, message, capsys):
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "demo"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: segprune" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["export", "quantize"])
def test_a_malformed_input_shape_is_named_with_the_form_it_should_take(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "model.keras", "--input-shape", "1x0x32", "--out", "model.onnx"])
    assert exit_info.value.code == 2
    assert "'1x0x32' is not HxW, BxHxW or BxHxWxC with positive integers, e.g. 1x256x256" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["evaluate", "--data", "synthetic"], ["export", "--format", "onnx", "--out", "{tmp}/model.onnx"], ["benchmark", "--runtime", "keras"]],
)
def test_a_model_with_two_inputs_is_refused_with_what_segprune_feeds(command, tmp_path, capsys):
    image, depth = keras.Input((32, 32, 3)), keras.Input((32, 32, 1))
    path = tmp_path / "two_inputs.keras"
    keras.Model([image, depth], keras.layers.Conv2D(1, 1, activation="sigmoid")(keras.layers.Concatenate()([image, depth]))).save(path)
    arguments = [command[0], str(path), *(part.format(tmp=tmp_path) for part in command[1:])]
    assert main(arguments) == 2
    assert "takes 2 inputs ((None, 32, 32, 3), (None, 32, 32, 1)); segprune expects one image input" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two_inputs.keras"]
