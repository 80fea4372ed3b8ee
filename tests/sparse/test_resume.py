"""Sparse runs survive a kill: killed part-way and resumed, they end with the model an uninterrupted run gives.

magnitude (polynomial schedule) is killed with a real SIGKILL in a subprocess once its first epoch's state
is on disk; L1 and L0 are "killed" in-process (an exception nothing catches, raised
right after an epoch's state is written), in their regularised phase and in their recovery phase.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import segprune
from segprune.cli import main
from segprune.data import BatchConfig
from segprune.models import unet
from segprune.training import TrainConfig
from segprune.training.run_state import StateMismatchError, run_folder
from tests.resume_harness import Killed, assert_same_history, assert_same_model, kill_after, sigkill_once

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = TrainConfig(patience=None, batches=BatchConfig(batch_size=4, image_size=32, samples_per_epoch=8))


@pytest.fixture(scope="module")
def dense():
    keras.utils.set_random_seed(5)
    return unet(num_classes=4, input_channels=1, base_filters=8, depth=1)


# (method, settings, epochs over all phases, epoch after which the run is killed)
IN_PROCESS = [
    ("l1", {"epochs": 1, "strength": 1e-3, "recovery_epochs": 2}, 2),  # killed in the recovery phase, after zeroing
    # killed while the gates learn (as tests/structured/test_resume.py's l0-channel case is): make test-all
    pytest.param("l0", {"epochs": 2, "strength": 60.0, "recovery_epochs": 0}, 1, marks=pytest.mark.exhaustive),
]


@pytest.mark.parametrize("method,settings,kill_at", IN_PROCESS, ids=["l1", "l0"])
def test_killed_and_resumed_ends_like_an_uninterrupted_run(data, dense, tmp_path, method, settings, kill_at):
    def run(out, **options):
        return segprune.sparsify(dense, method, sparsity=0.6, data=data, seed=2, train_config=CONFIG, checkpoint_path=out, **settings, **options)

    straight = run(tmp_path / "straight.keras")
    out = tmp_path / "resumed.keras"
    with pytest.raises(Killed):
        run(out, on_epoch=kill_after(kill_at))
    assert run_folder(out).is_dir() and not out.exists()
    resumed = run(out, resume=True)

    assert not run_folder(out).exists(), "a finished run leaves no state behind"
    assert_same_model(keras.saving.load_model(out, compile=False), straight.model)
    assert_same_model(resumed.model, straight.model)
    assert resumed.sparsity == straight.sparsity
    assert_same_history(resumed.training, straight.training)
    assert [step["epoch"] for step in resumed.trajectory] == [step["epoch"] for step in straight.trajectory]
    np.testing.assert_allclose([s["sparsity"] for s in resumed.trajectory], [s["sparsity"] for s in straight.trajectory], atol=1e-3)


# A process that runs magnitude pruning (polynomial schedule) with its state beside argv[3]; the test kills it.
_RUN_MAGNITUDE = """
import sys
import segprune
from segprune.data import BatchConfig, synthetic_dataset
from segprune.models import load_model
from segprune.training import TrainConfig

config = TrainConfig(patience=None, batches=BatchConfig(batch_size=4, image_size=32, samples_per_epoch=8))
data = synthetic_dataset(num_train=8, num_val=2, num_test=2, image_size=32, channels=1)
segprune.sparsify(load_model(sys.argv[1]), "magnitude", sparsity=0.7, data=data, epochs=int(sys.argv[2]), seed=4,
                  train_config=config, checkpoint_path=sys.argv[3], schedule="polynomial", resume=True)
"""


def test_sigkill_then_resume_magnitude_keeps_masks_and_schedule(data, dense, tmp_path):
    source = tmp_path / "unet.keras"
    dense.save(source)
    model = keras.saving.load_model(source, compile=False)
    epochs = 4  # 8 optimizer steps: the schedule ramps sparsity over steps 0-4 and the kill lands inside the ramp

    def run(out, **options):
        return segprune.sparsify(model, "magnitude", sparsity=0.7, data=data, epochs=epochs, seed=4, train_config=CONFIG, checkpoint_path=out,
                                 schedule="polynomial", **options)

    reference = run(tmp_path / "reference.keras")
    out, log = tmp_path / "interrupted.keras", tmp_path / "child.stderr"
    process = subprocess.Popen([sys.executable, "-c", _RUN_MAGNITUDE, str(source), str(epochs), str(out)],
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    first_epoch_state = run_folder(out) / "magnitude.keras.resume.npz"
    sigkill_once(process, first_epoch_state.exists, f"the first epoch's state ({first_epoch_state.name})", timeout=240, log=log)
    assert not out.exists() and (run_folder(out) / "run.json").exists()
    epochs_done = len(json.loads((run_folder(out) / "run.json").read_text())["phases"]["magnitude"]["epochs"])
    assert 1 <= epochs_done < epochs, "killed part-way"

    resumed = run(out, resume=True)
    assert not run_folder(out).exists()
    assert_same_model(keras.saving.load_model(out, compile=False), reference.model)
    assert resumed.sparsity == reference.sparsity
    assert_same_history(resumed.training, reference.training)


def test_a_state_from_other_settings_or_another_command_is_refused_and_kept(make_folder_dataset, tmp_path, capsys):
    root = make_folder_dataset(count=8)
    source = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=8, depth=1).save(source)
    model, folder_data = keras.saving.load_model(source, compile=False), segprune.load_data(root)
    out = tmp_path / "sparse.keras"
    common = dict(epochs=2, seed=0, checkpoint_path=out)
    with pytest.raises(Killed):
        segprune.sparsify(model, "magnitude", sparsity=0.5, data=folder_data, train_config=CONFIG, on_epoch=kill_after(1), **common)
    folder = run_folder(out)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}

    with pytest.raises(StateMismatchError, match=r"sparsity: saved 0\.5, now 0\.8"):
        segprune.sparsify(model, "magnitude", sparsity=0.8, data=folder_data, train_config=CONFIG, resume=True, **common)
    with pytest.raises(StateMismatchError, match="another command: `sparsify --method magnitude`, not `prune --method slimming`"):
        segprune.prune(model, "slimming", target="flops=0.5", data=folder_data, finetune_epochs=1, seed=0, train_config=CONFIG,
                       checkpoint_path=out, resume=True, regularise_epochs=1)
    other_root = tmp_path / "fewer_tiles"  # the same classes, so only the state can refuse it
    shutil.copytree(root, other_root)
    for part in ("images", "masks"):
        (other_root / part / "tile7.png").unlink()
    with pytest.raises(StateMismatchError, match="other data"):
        segprune.sparsify(model, "magnitude", sparsity=0.5, data=segprune.load_data(other_root), train_config=CONFIG, resume=True, **common)
    with pytest.raises(StateMismatchError, match="another model"):
        other = unet(num_classes=2, input_channels=1, base_filters=4, depth=1)
        segprune.sparsify(other, "magnitude", sparsity=0.5, data=folder_data, train_config=CONFIG, resume=True, **common)
    with pytest.raises(ValueError, match="--resume"):
        segprune.sparsify(model, "magnitude", sparsity=0.5, data=folder_data, train_config=CONFIG, **common)
    code = main(["sparsify", str(source), "--data", str(root), "--sparsity", "0.8", "--epochs", "2", "--resume", "--out", str(out)])
    printed = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert code == 2 and "sparsity: saved 0.5, now 0.8" in printed and "train_config.batches.image_size: saved 32, now 128" in printed

    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before, "a refused resume wrote nothing"
    assert not out.exists()
