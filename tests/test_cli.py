"""The `segprune` command end to end on small data: train, evaluate --json, errors, help."""

import json

import pytest

from segprune.cli import main


def test_train_then_evaluate_json(make_folder_dataset, tmp_path, capsys):
    root = make_folder_dataset(count=8)
    out = tmp_path / "runs" / "unet.keras"
    code = main(["train", "--data", str(root), "--model", "unet", "--epochs", "2", "--image-size", "32",
                 "--base-filters", "4", "--out", str(out)])
    assert code == 0 and out.exists()
    captured = capsys.readouterr()
    assert "epoch   2/2" in captured.err
    assert "test Dice" in captured.out

    code = main(["evaluate", str(out), str(out), "--data", str(root), "--split", "test", "--json"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    row = json.loads(lines[0])
    assert {"model", "dice", "iou", "pixel_accuracy", "params"} <= set(row)
    assert 0.0 <= row["dice"] <= 1.0 and row["params"] > 0


def test_evaluate_table(make_folder_dataset, tmp_path, capsys):
    from tests.conftest import DATA_DIR

    root = make_folder_dataset(count=6)
    assert main(["evaluate", str(DATA_DIR / "legacy_unet_keras2.h5"), "--data", str(root)]) == 0
    assert "pixel_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["evaluate", "missing.keras", "--data", "synthetic"], "No model file"),
        (["evaluate", "x.keras", "--data", "/no/such/folder"], "No dataset"),
        (["train", "--out", "model.h5", "--epochs", "1"], "must end in .keras"),
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
