"""prune_channels end to end: budgets, the summary, the original untouched, the CLI."""


import keras
import numpy as np
import pytest

from segprune import flops, prune_channels, pruning_summary
from segprune.cli import main
from segprune.models import unet


def test_half_of_every_group_cuts_default_unet_macs_by_70_to_80_percent():
    model = unet(num_classes=2, input_channels=1)
    before = [w.copy() for w in model.get_weights()]
    pruned = prune_channels(model, ratio=0.5)
    cut = 1 - flops(pruned, (256, 256)).macs / flops(model, (256, 256)).macs
    assert 0.70 <= cut <= 0.80
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the original is untouched"
    assert pruned.output_shape == model.output_shape


@pytest.mark.parametrize("target,resource", [("flops=0.25", "macs"), ("params=0.4", "params")])
def test_targets_are_met(target, resource):
    model = unet(num_classes=2, input_channels=1)
    fraction = float(target.split("=")[1])
    summary = pruning_summary(model, prune_channels(model, target=target))
    ratio = summary.macs_ratio if resource == "macs" else summary.params_ratio
    assert fraction - 0.05 <= ratio <= fraction


def test_unreachable_target_is_explained():
    with pytest.raises(ValueError, match="cannot be met"):
        prune_channels(unet(base_filters=8), target="flops=0.01")


def test_summary_lists_changed_layers():
    model = unet(base_filters=16, depth=2)
    summary = pruning_summary(model, prune_channels(model, ratio={"enc0a_conv": 0.5}))
    changed = {layer.name: layer for layer in summary.changed_layers()}
    assert changed["enc0a_conv"].channels_before == 16 and changed["enc0a_conv"].channels_after == 8
    assert changed["enc0b_conv"].params_after == changed["enc0b_conv"].params_before // 2
    assert "mid_a_conv" not in changed


def test_cli_prune_writes_a_new_model_and_never_the_input(tmp_path, capsys):
    source = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=8).save(source)
    original_bytes = source.read_bytes()
    out = tmp_path / "pruned.keras"
    assert main(["prune", str(source), "--method", "l2", "--target", "flops=0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mid_a_conv" in printed and "MACs at" in printed
    assert keras.saving.load_model(out).count_params() < keras.saving.load_model(source).count_params()
    assert source.read_bytes() == original_bytes

    assert main(["prune", str(source), "--ratio", "0.5", "--out", str(source)]) == 2
    assert "input model" in capsys.readouterr().err
    assert main(["prune", str(source), "--ratio", "0.5", "--finetune-epochs", "1", "--out", str(out)]) == 2
    assert "--data" in capsys.readouterr().err


def test_cli_prune_with_data_and_fine_tuning(make_folder_dataset, tmp_path, capsys):
    root = make_folder_dataset(count=8)
    source = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=8, depth=2).save(source)
    out = tmp_path / "pruned.keras"
    code = main(["prune", str(source), "--method", "taylor", "--ratio", "0.5", "--data", str(root),
                 "--finetune-epochs", "1", "--out", str(out)])
    assert code == 0
    dense, pruned = keras.saving.load_model(source, compile=False), keras.saving.load_model(out, compile=False)
    assert pruned.count_params() < dense.count_params() and pruned.output_shape == dense.output_shape
    assert "test Dice: dense" in capsys.readouterr().out
