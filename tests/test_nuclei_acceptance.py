"""The foundation's accuracy bar on real data: default U-Net training on the nuclei tiles."""

import json

import pytest

from segprune.cli import main


@pytest.mark.slow
def test_default_unet_reaches_dice_093_on_nuclei_test_tiles(nuclei_path, tmp_path, capsys):
    out = tmp_path / "unet.keras"
    assert main(["train", "--data", str(nuclei_path), "--model", "unet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(nuclei_path), "--split", "test", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["dice"] >= 0.93, scores
