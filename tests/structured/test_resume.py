"""Structured runs survive a kill: l0-channel, slimming and one-shot L1 + fine-tuning, stopped part-way and
resumed, end with the model an uninterrupted run gives (same architecture, weights within float tolerance).

l0-channel is "killed" in-process while its gates learn, slimming during the fine-tune of its pruned
architecture (an exception nothing catches, raised right after an epoch's state is written; the SIGKILL of
a real process is tested on `segprune sparsify` in tests/sparse/test_resume.py). One-shot L1 is stopped
by Ctrl-C (the run's own SIGINT handler, checked to be installed), which ends the run at the end of the epoch and says how to resume.
"""

import signal

import keras
import pytest

import segprune
from segprune.data import BatchConfig
from segprune.models import unet
from segprune.training import TrainConfig
from segprune.training.run_state import RunInterrupted, run_folder
from tests.resume_harness import Killed, assert_same_history, assert_same_model, kill_after

CONFIG = TrainConfig(patience=None, batches=BatchConfig(batch_size=4, image_size=32, samples_per_epoch=8))


@pytest.fixture(scope="module")
def dense():
    keras.utils.set_random_seed(7)
    return unet(num_classes=4, input_channels=1, base_filters=8, depth=1)


# (method, options, epoch after which the run is killed)
CASES = [
    ("l0-channel", {"target": "flops=0.5", "regularise_epochs": 2, "finetune_epochs": 0}, 1),  # while the gates learn
    ("slimming", {"target": "flops=0.5", "regularise_epochs": 1, "finetune_epochs": 2}, 2),  # fine-tuning the pruned model
]


def _prune(dense, data, method, out, **options):
    return segprune.prune(dense, method, data=data, round_to=2, image_size=32, seed=1, train_config=CONFIG, checkpoint_path=out, **options)


@pytest.mark.parametrize("method,options,kill_at", CASES, ids=[case[0] for case in CASES])
def test_killed_and_resumed_ends_like_an_uninterrupted_run(data, dense, tmp_path, method, options, kill_at):
    straight = _prune(dense, data, method, tmp_path / "straight.keras", **options)
    out = tmp_path / "resumed.keras"
    with pytest.raises(Killed):
        _prune(dense, data, method, out, on_epoch=kill_after(kill_at), **options)
    assert run_folder(out).is_dir() and not out.exists()
    resumed = _prune(dense, data, method, out, resume=True, **options)

    assert not run_folder(out).exists(), "a finished run leaves no state behind"
    assert straight.model.count_params() < dense.count_params()
    assert_same_model(keras.saving.load_model(out, compile=False), straight.model)
    assert_same_model(resumed.model, straight.model)
    assert resumed.summary.macs_ratio == straight.summary.macs_ratio
    assert_same_history(resumed.training, straight.training)


def test_ctrl_c_stops_oneshot_finetuning_at_the_epoch_end_and_resume_finishes_it(data, dense, tmp_path):
    options = {"ratio": 0.5, "finetune_epochs": 3}
    straight = _prune(dense, data, "l1", tmp_path / "straight.keras", **options)

    def press_ctrl_c(record, result, epochs):
        # What the signal would run, called directly: a real SIGINT reaching a pytest-xdist worker at a moment the
        # run's handler is not in place ends the whole worker, not this test.
        if record.epoch == 1:
            handler = signal.getsignal(signal.SIGINT)
            assert callable(handler) and getattr(handler, "__name__", "") == "_on_interrupt", f"the run's Ctrl-C handler is not installed: {handler!r}"
            handler(signal.SIGINT, None)

    out = tmp_path / "resumed.keras"
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    with pytest.raises(RunInterrupted, match="--resume") as interruption:
        _prune(dense, data, "l1", out, on_epoch=press_ctrl_c, **options)
    assert interruption.value.folder == run_folder(out) and not out.exists()
    assert (run_folder(out) / "prune.result.keras").exists(), "the pruned architecture is kept for the fine-tune"
    assert signal.getsignal(signal.SIGINT) == handler_before, "the caller's Ctrl-C handler is put back"

    epochs_seen = []
    resumed = _prune(dense, data, "l1", out, resume=True, on_epoch=lambda record, *_: epochs_seen.append(record.epoch), **options)
    assert epochs_seen == [2, 3], "the resumed run starts at the epoch after the one Ctrl-C ended"
    assert not run_folder(out).exists()
    assert_same_model(keras.saving.load_model(out, compile=False), straight.model)
    assert_same_history(resumed.training, straight.training)
