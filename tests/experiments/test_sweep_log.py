"""A sweep killed while writing a result row resumes without losing or repeating any finished row."""

import keras

from segprune.data import synthetic_dataset
from segprune.experiments import SweepConfig, run_sweep
from segprune.models import unet


def test_a_torn_last_row_is_run_again_and_no_row_is_lost(tmp_path):
    data = synthetic_dataset(num_train=4, num_val=2, num_test=2, image_size=32, seed=0)
    model = unet(num_classes=data.num_classes, input_channels=data.image_channels, base_filters=4, depth=2)
    config = SweepConfig(methods=("classical-otsu", "classical-kmeans"), budgets=(0.5,), finetune_epochs=0, image_size=32)
    first = run_sweep(model, data, tmp_path, config)
    assert [row["method"] for row in first] == ["dense", "classical-otsu", "classical-kmeans"]

    log = tmp_path / "results.jsonl"
    text = log.read_text()
    log.write_text(text[: text.rstrip("\n").rfind("\n") + 1] + text.rstrip("\n").rsplit("\n", 1)[1][:20])  # kill mid-row

    messages = []
    again = run_sweep(model, data, tmp_path, config, progress=messages.append)
    assert [row["method"] for row in again] == ["dense", "classical-otsu", "classical-kmeans"]
    assert sum("done earlier" in message for message in messages) == 2  # dense and otsu were not run again
    assert again[2]["dice"] == first[2]["dice"]
    rows_on_disk = [line for line in log.read_text().splitlines() if line]
    assert len(rows_on_disk) == 3  # the torn line is gone, the re-run row is on a line of its own

    messages.clear()
    run_sweep(model, data, tmp_path, config, progress=messages.append)
    assert sum("done earlier" in message for message in messages) == 3
    keras.backend.clear_session()


def test_a_sweep_of_another_model_or_dataset_is_not_resumed_into(tmp_path):
    import pytest

    data = synthetic_dataset(num_train=4, num_val=2, num_test=2, image_size=32, seed=0)
    model = unet(num_classes=data.num_classes, input_channels=data.image_channels, base_filters=4, depth=2)
    config = SweepConfig(methods=("classical-otsu",), budgets=(0.5,), finetune_epochs=0, image_size=32)
    run_sweep(model, data, tmp_path, config)
    rows = (tmp_path / "results.jsonl").read_text()
    other = unet(num_classes=data.num_classes, input_channels=data.image_channels, base_filters=4, depth=2)  # other weights
    with pytest.raises(ValueError, match="another dense model or dataset \\(model differ"):
        run_sweep(other, data, tmp_path, config)
    more = synthetic_dataset(num_train=5, num_val=2, num_test=2, image_size=32, seed=0)
    with pytest.raises(ValueError, match="samples differ"):
        run_sweep(model, more, tmp_path, config)
    assert (tmp_path / "results.jsonl").read_text() == rows, "nothing written"
