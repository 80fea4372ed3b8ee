"""Training: it learns, keeps the best epoch, checkpoints atomically, stops early and on Ctrl-C."""

import keras
import numpy as np
import pytest

from segprune import TrainConfig, evaluate, train
from segprune.data import BatchConfig, folder_dataset, synthetic_dataset
from segprune.models import unet

FAST = TrainConfig(learning_rate=3e-3, batches=BatchConfig(batch_size=4, image_size=32, samples_per_epoch=32))


@pytest.fixture(scope="module")
def tiny_data():
    return synthetic_dataset(num_train=16, num_val=4, num_test=4, image_size=32, channels=1)


@pytest.mark.slow
def test_training_learns_and_checkpoints_a_plain_model(make_folder_dataset, tmp_path):
    blobs = folder_dataset(make_folder_dataset(count=12), val_fraction=0.25, test_fraction=0.0)
    model = unet(num_classes=2, input_channels=1, base_filters=8, depth=2)
    before = evaluate(model, blobs, "val").dice
    checkpoint = tmp_path / "best.keras"
    seen = []
    result = train(model, blobs, epochs=6, config=FAST, checkpoint_path=checkpoint, on_epoch=lambda r, *_: seen.append(r.epoch))
    assert seen == [1, 2, 3, 4, 5, 6]
    assert result.best_val_dice > max(0.6, before + 0.1)
    assert evaluate(model, blobs, "val").dice == pytest.approx(result.best_val_dice)
    reloaded = keras.saving.load_model(checkpoint)  # no custom objects needed
    sample = np.random.rand(1, 32, 32, 1).astype("float32")
    np.testing.assert_allclose(reloaded.predict(sample, verbose=0), model.predict(sample, verbose=0), atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files are left behind"


@pytest.mark.slow
def test_early_stopping(tiny_data):
    model = unet(num_classes=4, input_channels=1, base_filters=4, depth=1)
    config = TrainConfig(learning_rate=1e-9, patience=1, batches=FAST.batches)
    result = train(model, tiny_data, epochs=20, config=config)
    assert result.stopped_early
    assert len(result.history) < 20


@pytest.mark.slow
def test_ctrl_c_keeps_the_best_weights(tiny_data):
    model = unet(num_classes=4, input_channels=1, base_filters=4, depth=1)

    def interrupt(record, result, epochs):
        if record.epoch == 2:
            raise KeyboardInterrupt

    result = train(model, tiny_data, epochs=10, config=FAST, on_epoch=interrupt)
    assert result.interrupted
    assert len(result.history) == 2
    assert evaluate(model, tiny_data, "val").dice == pytest.approx(result.best_val_dice)


def test_class_mismatch_is_refused(tiny_data):
    with pytest.raises(ValueError, match="num_classes=4"):
        train(unet(num_classes=2, input_channels=1, base_filters=4), tiny_data, epochs=1)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(tiny_data, tmp_path):
    def run(checkpoint, stop_after=None, resume=False):
        keras.utils.set_random_seed(1)
        model = unet(num_classes=4, input_channels=1, base_filters=4, depth=1)

        def maybe_interrupt(record, result, epochs):
            if record.epoch == stop_after:
                raise KeyboardInterrupt

        result = train(model, tiny_data, epochs=4, config=FAST, checkpoint_path=checkpoint, on_epoch=maybe_interrupt, resume=resume)
        return model, result

    straight_model, straight = run(tmp_path / "straight.keras")
    assert not (tmp_path / "straight.keras.resume.npz").exists(), "a finished run leaves no state behind"

    checkpoint = tmp_path / "resumed.keras"
    _, first_part = run(checkpoint, stop_after=2)
    assert first_part.interrupted and (tmp_path / "resumed.keras.resume.npz").exists()
    with pytest.raises(ValueError, match="--resume"):
        run(checkpoint)
    resumed_model, resumed = run(checkpoint, resume=True)

    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    np.testing.assert_allclose([r.loss for r in resumed.history], [r.loss for r in straight.history], rtol=1e-4)
    for resumed_weight, straight_weight in zip(resumed_model.get_weights(), straight_model.get_weights()):
        np.testing.assert_allclose(resumed_weight, straight_weight, atol=1e-4)


def test_epochs_before_keep_best_from_epoch_are_never_kept_or_stop_the_run(tiny_data):
    model = unet(num_classes=4, input_channels=1, base_filters=4, depth=1)  # the rule, not the model, is under test
    config = TrainConfig(learning_rate=3e-3, patience=1, batches=FAST.batches)
    result = train(model, tiny_data, epochs=3, config=config, keep_best_from_epoch=3)
    assert len(result.history) == 3 and result.best_epoch == 3 and not result.stopped_early


class _Weights:
    """Stands in for the model the callback watches: weights are the epoch they were taken at."""

    def __init__(self) -> None:
        self.epoch = 0
        self.stop_training = False

    def get_weights(self):
        return [self.epoch]


def _run_epochs(monkeypatch, dices, losses, patience):
    from types import SimpleNamespace

    from segprune.training import loop

    scores = iter(dices)
    monkeypatch.setattr(loop, "evaluate", lambda *args, **kwargs: SimpleNamespace(dice=next(scores)))
    tracker = loop._BestWeights(None, TrainConfig(patience=patience), None, None, len(losses), 1)
    model = _Weights()
    tracker.set_model(model)
    for epoch, loss in enumerate(losses):
        model.epoch = epoch + 1
        tracker.on_epoch_end(epoch, {"loss": loss})
        if model.stop_training:
            break
    return tracker, model


def test_patience_waits_while_no_pixel_is_predicted_yet_but_the_loss_still_falls(monkeypatch):
    # a narrow pruned model often predicts nothing for its first epochs: Dice 0 cannot tell them apart
    tracker, model = _run_epochs(monkeypatch, [0.0] * 6 + [0.4, 0.3, 0.3], [0.9, 0.8, 0.85, 0.7, 0.6, 0.55, 0.5, 0.5, 0.5], patience=2)
    assert [r.epoch for r in tracker.result.history] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert model.stop_training and tracker.result.stopped_early  # Dice then stalls for 2 epochs after epoch 7
    assert tracker.result.best_epoch == 7 and tracker.best_weights == [7]


def test_a_zero_dice_run_keeps_its_lowest_loss_epoch_and_stops_when_the_loss_stalls(monkeypatch):
    tracker, model = _run_epochs(monkeypatch, [0.0] * 8, [0.9, 0.7, 0.8, 0.75, 0.72, 0.71, 0.6, 0.6], patience=3)
    assert tracker.result.stopped_early and len(tracker.result.history) == 5  # epochs 3-5 do not beat 0.7
    assert tracker.result.best_epoch == 2 and tracker.best_weights == [2]
    assert tracker.result.best_val_dice == 0.0
