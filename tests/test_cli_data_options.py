"""--num-classes, --ignore-index and --mask-pattern on the command line: masks {0, 1, 2} + 255 named img_001_mask.png."""

import numpy as np
from PIL import Image

import segprune.training
from segprune.cli import main
from segprune.models.outputs import output_kind
from tests.conftest import write_png


def _voc_like(root, count: int = 8):
    """RGB JPEGs images/img_000.jpg with masks masks/img_000_mask.png holding classes 0, 1, 2 and 255 ("skip")."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for index in range(count):
        mask = np.zeros((16, 16), np.uint8)
        mask[2:8, 2:8], mask[9:15, 8:14] = 1, 2
        mask[8, :] = 255
        image = rng.integers(0, 50, (16, 16, 3)).astype(np.uint8)
        image[mask == 1, 0], image[mask == 2, 1] = 220, 220
        Image.fromarray(image).save(root / "images" / f"img_{index:03d}.jpg")
        write_png(root / "masks" / f"img_{index:03d}_mask.png", mask)
    return root


def test_ignore_label_is_asked_for_then_the_model_gets_three_classes(tmp_path, capsys, monkeypatch):
    data = _voc_like(tmp_path / "voc_like")
    out = tmp_path / "model.keras"
    command = ["train", "--data", str(data), "--base-filters", "4", "--out", str(out)]
    assert main(command) == 2
    refusal = capsys.readouterr().err
    assert "0, 1, 2, 255" in refusal and "--ignore-index 255" in refusal and "256" not in refusal

    trained = {}

    def record_instead_of_training(model, dataset, *arguments, **options):  # fitting itself is tested in test_cli.py
        trained.update(classes=output_kind(model).num_classes, ignore_index=dataset.ignore_index, ids=dataset.ids("train"))
        raise ValueError("stopped by the test before fitting")

    monkeypatch.setattr(segprune.training, "train", record_instead_of_training)
    assert main([*command, "--ignore-index", "255", "--mask-pattern", "{stem}_mask.png"]) == 2
    assert "stopped by the test" in capsys.readouterr().err
    assert trained["classes"] == 3 and trained["ignore_index"] == 255 and len(trained["ids"]) >= 4
