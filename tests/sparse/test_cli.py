"""`segprune sparsify` and the regularised `segprune prune` methods from the command line."""

import hashlib

import keras
import pytest

from segprune.cli import main
from segprune.models import unet
from segprune.sparse import sparsity_summary


@pytest.mark.parametrize("method,extra", [("magnitude", ["--pattern", "2:4", "--schedule", "constant", "--epochs", "2"]),
                                          # the same command path with another method: make test-all
                                          pytest.param("l0", ["--epochs", "1", "--recovery-epochs", "0"], marks=pytest.mark.exhaustive)])
@pytest.mark.slow
def test_sparsify_writes_a_plain_sparse_model_and_keeps_the_input(make_folder_dataset, tmp_path, capsys, method, extra):
    root = make_folder_dataset(count=8)
    source = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=8, depth=2).save(source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    out = tmp_path / "sparse.keras"
    code = main(["sparsify", str(source), "--data", str(root), "--method", method, "--sparsity", "0.5", *extra, "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "kernel sparsity" in printed and "test Dice: dense" in printed
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest
    model = keras.saving.load_model(out, compile=False)
    assert sparsity_summary(model, input_shape=(32, 32)).sparsity >= 0.45


def test_prune_l0_channel_needs_data_and_target(tmp_path, capsys):
    source = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=16, depth=2).save(source)
    assert main(["prune", str(source), "--method", "l0-channel", "--ratio", "0.5", "--out", str(tmp_path / "p.keras")]) == 2
    assert "prunes to a budget: give target=" in capsys.readouterr().err
    assert main(["prune", str(source), "--method", "l0-channel", "--target", "flops=0.5", "--out", str(tmp_path / "p.keras")]) == 2
    assert "trains on data" in capsys.readouterr().err
    assert not (tmp_path / "p.keras").exists()


@pytest.mark.exhaustive  # the same prune command as l1's (tests/structured/test_oneshot.py); slimming itself: test_regularised.py
def test_prune_slimming_from_the_command_line(make_folder_dataset, tmp_path, capsys):
    root = make_folder_dataset(count=8)
    source = tmp_path / "unet.keras"
    model = unet(num_classes=2, input_channels=1, base_filters=16, depth=2)
    model.save(source)
    out = tmp_path / "slim.keras"
    code = main(["prune", str(source), "--method", "slimming", "--target", "flops=0.5", "--data", str(root),
                 "--regularise-epochs", "1", "--finetune-epochs", "1", "--out", str(out)])
    assert code == 0
    assert "pruned layers (slimming)" in capsys.readouterr().out
    assert keras.saving.load_model(out, compile=False).count_params() < model.count_params()


def test_sparsify_rejects_a_strength_for_magnitude(make_folder_dataset, tmp_path, capsys):
    root = make_folder_dataset(count=8)
    source = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=8, depth=2).save(source)
    code = main(["sparsify", str(source), "--data", str(root), "--sparsity", "0.5", "--strength", "1", "--out", str(tmp_path / "o.keras")])
    assert code == 2 and "--strength" in capsys.readouterr().err
