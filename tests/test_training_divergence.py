"""A loss that turns NaN stops training with one line, keeps the last good epoch, and resumes with a lower learning rate."""

import shlex

import keras
import numpy as np
import pytest

from segprune import TrainConfig, train
from segprune.data import BatchConfig, synthetic_dataset
from segprune.models import unet
from segprune.training import TrainingDiverged
from segprune.training.checkpoint import state_path

CONFIG = TrainConfig(learning_rate=3e-3, patience=None, batches=BatchConfig(batch_size=4, image_size=32, samples_per_epoch=4))


class _PoisonAtEpoch(keras.callbacks.Callback):
    """Sets one kernel weight to NaN when (0-based) `epoch` begins: that epoch's loss is NaN."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            layer = next(layer for layer in self.model.layers if isinstance(layer, keras.layers.Conv2D))
            kernel, *rest = layer.get_weights()
            kernel.flat[0] = np.nan
            layer.set_weights([kernel, *rest])


def test_a_nan_loss_stops_training_keeps_the_last_good_epoch_and_resumes(tmp_path):
    data = synthetic_dataset(num_train=4, num_val=2, num_test=0, image_size=32, channels=1)
    model = unet(num_classes=data.num_classes, input_channels=1, base_filters=4, depth=1)
    checkpoint = tmp_path / "unet.keras"
    with pytest.raises(TrainingDiverged) as raised:
        train(model, data, epochs=2, config=CONFIG, checkpoint_path=checkpoint, callbacks=[_PoisonAtEpoch(1)])
    message = str(raised.value)
    assert "loss became NaN in epoch 2 (peak learning rate 0.003)" in message and "\n" not in message
    assert f"state of epoch 1, the last with a finite loss, is kept in {str(state_path(checkpoint))!r}" in message
    assert "--resume --learning-rate 0.0003" in message
    assert raised.value.epoch == 2
    assert all(np.isfinite(weight).all() for weight in model.get_weights())  # the best epoch's weights, not the NaN ones
    assert checkpoint.exists() and state_path(checkpoint).exists()

    lower = TrainConfig(learning_rate=3e-4, patience=None, batches=CONFIG.batches)
    result = train(model, data, epochs=2, config=lower, checkpoint_path=checkpoint, resume=True)
    assert [record.epoch for record in result.history] == [1, 2]
    assert all(np.isfinite(record.loss) for record in result.history)
    assert not state_path(checkpoint).exists()


def _diverging_above(rate: float):
    """`train` whose second epoch's loss turns NaN whenever the peak learning rate is `rate` or more (a rate too high)."""
    from segprune.training import phases

    real_train = phases.train

    def diverging_train(model, data, epochs, config, callbacks=(), **options):
        poison = [_PoisonAtEpoch(1)] if config.learning_rate >= rate else []
        return real_train(model, data, epochs, config, callbacks=[*callbacks, *poison], **options)

    return diverging_train


def test_a_diverged_prune_resumes_from_the_command_it_prints_and_only_at_a_lower_rate(make_folder_dataset, tmp_path, capsys, monkeypatch):
    from segprune.cli import main
    from segprune.training import phases
    from segprune.training.run_state import run_folder

    root = make_folder_dataset(count=6)
    source, out = tmp_path / "unet.keras", tmp_path / "pruned.keras"
    unet(num_classes=2, input_channels=1, base_filters=8, depth=1).save(source)
    monkeypatch.setattr(phases, "train", _diverging_above(1e-3))
    command = ["prune", str(source), "--ratio", "0.5", "--data", str(root), "--finetune-epochs", "2", "--no-distill", "--out", str(out)]
    assert main(command) == 2
    printed = capsys.readouterr().err
    assert "'finetune' fine-tune became non-finite in epoch 2 (peak learning rate 0.001)" in printed
    resume = shlex.split(printed.split("To resume at one tenth of the rate: ")[1])
    assert resume == ["segprune", *command, "--resume", "--learning-rate", "0.0001"]
    assert run_folder(out).exists() and not out.exists()

    assert main([*command, "--resume", "--learning-rate", "0.01"]) == 2  # a higher rate is refused, as is any other change
    assert "train_config.learning_rate: saved 0.001, now 0.01" in capsys.readouterr().err
    assert main([*command, "--round-to", "4", "--resume", "--learning-rate", "0.0001"]) == 2
    assert "round_to: saved 8, now 4" in capsys.readouterr().err

    assert main(resume[1:]) == 0
    assert keras.saving.load_model(out, compile=False).count_params() < keras.saving.load_model(source, compile=False).count_params()
    assert not run_folder(out).exists()
