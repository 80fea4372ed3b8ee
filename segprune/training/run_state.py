"""The resumable state of a pruning run made of phases (`RunState`), its identity and its interruptions.

A pruning run (`segprune.sparsify`, `segprune.prune`) is a sequence of phases: a regularised or masked
fine-tune, a decision (which weights or channels go), surgery, a final fine-tune. Its `RunState` is a folder
beside the output (`unet-sparse.keras` -> `unet-sparse.keras.resume/`) holding `run.json` (what the run is:
command, method, a fingerprint of the model and the data, every setting; which phases finished and what they
decided; the per-epoch sparsity of the running phase), the model each finished phase produced (`.keras`,
e.g. the pruned architecture before fine-tuning), and each trained phase's own `train` checkpoint state
(`segprune.training.checkpoint`). Resuming skips the finished phases, reloads the last one's model and lets
`train` continue the running phase from its last finished epoch. Every write is a temporary file, fsynced,
then renamed over the old one, so a kill at any moment leaves the previous state usable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import threading
from dataclasses import asdict, is_dataclass
from pathlib import Path

import keras
import numpy as np

from segprune._io import atomic_path, save_model

STATE_FORMAT = 1


class StateMismatchError(ValueError):
    """A saved run state belongs to another command, model, data or settings than the run asked to resume it."""


class RunInterrupted(Exception):
    """Ctrl-C stopped a resumable run at the end of an epoch; its state is kept and `resume` continues it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(
            f"interrupted; the state is kept in {str(folder)!r}: run the same command with --resume "
            "(resume=True in Python) to continue where it stopped"
        )


def run_folder(checkpoint_path: str | Path) -> Path:
    """Where a run writing `checkpoint_path` keeps its state: `out.keras` -> `out.keras.resume/`."""
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(checkpoint_path.name + ".resume")


def model_fingerprint(model: keras.Model) -> str:
    """A digest of the layer kinds and every weight (names left out: Keras numbers them per session)."""
    digest = hashlib.sha256()
    for layer in model.layers:
        digest.update(type(layer).__name__.encode())
    for weight in model.get_weights():
        digest.update(str(weight.shape).encode())
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def data_fingerprint(data) -> dict:
    """A dataset's name, classes and the sample ids of every split (a digest of them)."""
    ids = json.dumps({split: sorted(members) for split, members in sorted(data.splits.items())})
    return {"name": data.name, "num_classes": data.num_classes, "samples": hashlib.sha256(ids.encode()).hexdigest()[:16]}


def jsonable(value):
    """Settings as JSON: dataclasses as dicts, tuples as lists, anything else by its repr."""
    if is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **jsonable(asdict(value))}
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def run_identity(command: str, method: str, model: keras.Model, data, settings: dict) -> dict:
    """What a run is, for refusing to resume another one: command, method, model, data and settings."""
    return {
        "command": command,
        "method": method,
        "model": model_fingerprint(model),
        "data": None if data is None else data_fingerprint(data),
        "settings": jsonable(settings),
    }


class RunState:
    """The phases of one resumable run, kept in `folder` (nothing is kept when `folder` is None).

    Use `RunState.open` and the instance as a context manager: inside it, Ctrl-C asks the run to stop when
    the current epoch ends (a second Ctrl-C stops at once; the state of the last finished epoch is kept).

    Example:
        >>> with RunState.open("out.keras", run_identity("sparsify", "l1", model, data, settings), resume=True) as run:
        ...     record = run.phase("l1")  # None until that phase has finished
    """

    def __init__(self, folder: Path | None, identity: dict, phases: dict | None = None) -> None:
        self.folder = folder
        self.identity = identity
        self.phases: dict[str, dict] = phases or {}
        self.resumed = phases is not None
        self.stop_requested = False
        self.diverged: dict | None = None  # set when a phase's loss became non-finite: a resume may lower the learning rate
        self._previous_handler = None

    @classmethod
    def open(cls, checkpoint_path: str | Path | None, identity: dict, resume: bool) -> RunState:
        """The state of the run writing `checkpoint_path`: the saved one when resuming, else a new one.

        Raises `StateMismatchError` (writing nothing) when the saved state is another run's, and ValueError
        when a state exists but `resume` is False. A run stopped by a diverging loss (`mark_diverged`) may be
        resumed with a lower learning rate, its only changed setting; the state then records the new settings.
        """
        if checkpoint_path is None:
            return cls(None, identity)
        folder = run_folder(checkpoint_path)
        manifest = folder / "run.json"
        if not manifest.exists():
            state = cls(folder, identity)
            if folder.exists():  # a kill before the first manifest was written: nothing in it is usable
                shutil.rmtree(folder)
            state._write()
            return state
        if not resume:
            raise ValueError(
                f"An interrupted run left its state in {str(folder)!r}. Resume it (--resume, or resume=True in "
                "Python) or delete that folder to start over."
            )
        saved = json.loads(manifest.read_text())
        _check_identity(saved.get("identity", {}), identity, folder, saved.get("diverged"))
        state = cls(folder, identity, saved.get("phases", {}))
        if saved.get("identity") != identity or saved.get("diverged"):  # resumed at a lower learning rate: that is now the run's
            state._write()
        return state

    # ---------------------------------------------------------------------------------------------- phases
    def phase(self, name: str) -> dict | None:
        """What a finished phase recorded, or None if it has not finished."""
        record = self.phases.get(name)
        return record if record is not None and record.get("done") else None

    def checkpoint(self, name: str) -> Path | None:
        """The checkpoint a trained phase passes to `train` (its state lies beside it), or None without a folder."""
        return None if self.folder is None else self.folder / f"{name}.keras"

    def finish(self, name: str, record: dict, model: keras.Model | None = None) -> dict:
        """Marks phase `name` finished with `record` (JSON-safe) and keeps the `model` it produced."""
        if self.folder is not None and model is not None:
            with atomic_path(self.folder / f"{name}.result.keras") as temporary:
                save_model(model, temporary)
                with open(temporary, "rb") as handle:
                    os.fsync(handle.fileno())
        self.phases[name] = {**jsonable(record), "done": True}
        self._write()
        return self.phases[name]

    def model(self, name: str) -> keras.Model:
        """The model a finished phase produced (as it was saved at the end of that phase)."""
        path = self.folder / f"{name}.result.keras"
        if not path.exists():
            raise ValueError(f"The run state in {str(self.folder)!r} is incomplete ({path.name} is missing); delete the folder to start over.")
        return keras.saving.load_model(path, compile=False)

    def epoch_values(self, name: str) -> list:
        """Per-epoch values recorded for the running phase `name` (e.g. its sparsity after each epoch)."""
        return self.phases.setdefault(name, {"done": False}).setdefault("epochs", [])

    def record_epoch(self, name: str, value, epoch: int) -> None:
        """Records `value` for (0-based) `epoch` of phase `name`, dropping values of epochs a resume repeats."""
        values = self.epoch_values(name)
        del values[epoch:]
        values.append(jsonable(value))
        self._write()

    def mark_diverged(self, phase: str, epoch: int, learning_rate: float) -> None:
        """Records that phase `phase`'s loss became non-finite in `epoch` at `learning_rate`, so a resume may lower the rate."""
        self.diverged = {"phase": phase, "epoch": epoch, "learning_rate": learning_rate}
        self._write()

    def complete(self, model: keras.Model, checkpoint_path: str | Path | None) -> None:
        """Saves the finished run's model to `checkpoint_path`, then removes the state (in that order)."""
        if checkpoint_path is not None:
            save_model(model, checkpoint_path)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _write(self) -> None:
        if self.folder is None:
            return
        manifest = {"format": STATE_FORMAT, "identity": self.identity, "phases": self.phases}
        if self.diverged is not None:
            manifest["diverged"] = self.diverged
        text = json.dumps(manifest, indent=1)
        with atomic_path(self.folder / "run.json") as temporary:
            with open(temporary, "w") as handle:
                handle.write(text)
                _sync(handle)
        _sync_folder(self.folder)

    # ------------------------------------------------------------------------------------------ interrupts
    def callbacks(self) -> list[keras.callbacks.Callback]:
        """Callbacks for the phase's `train`: stop at the start of the epoch after a Ctrl-C."""
        return [_StopAtEpochStart(self)] if self.folder is not None else []

    def raise_if_interrupted(self, interrupted: bool) -> None:
        """Raises `RunInterrupted` when a phase's `train` reports that Ctrl-C stopped it.

        A Ctrl-C during a phase's last epoch lets that phase finish and be recorded; the run then stops at
        the start of the next phase's first epoch (or simply finishes, if none follows).
        """
        if self.folder is not None and interrupted:
            raise RunInterrupted(self.folder)

    def __enter__(self) -> RunState:
        if self.folder is not None and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def __exit__(self, *exception) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def _on_interrupt(self, signum, frame) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        sys.stderr.write("\nCtrl-C: stopping when this epoch ends and keeping the state (Ctrl-C again stops now, losing the epoch)\n")


class _StopAtEpochStart(keras.callbacks.Callback):
    """Turns a Ctrl-C requested during an epoch into an interruption once that epoch's state is saved.

    `train` saves the state at the end of every epoch and treats KeyboardInterrupt as an interruption that
    keeps it, so raising at the start of the next epoch stops exactly on an epoch boundary.
    """

    def __init__(self, run: RunState) -> None:
        super().__init__()
        self.run = run

    def on_epoch_begin(self, epoch, logs=None):
        if self.run.stop_requested:
            raise KeyboardInterrupt


def _check_identity(saved: dict, current: dict, folder: Path, diverged: dict | None = None) -> None:
    where = f"The run state in {str(folder)!r}"
    fix = "Run the command that wrote it, or delete that folder to start this run afresh."
    if saved.get("command") != current["command"] or saved.get("method") != current["method"]:
        raise StateMismatchError(
            f"{where} belongs to another command: `{saved.get('command')} --method {saved.get('method')}`, not "
            f"`{current['command']} --method {current['method']}`. {fix}"
        )
    if saved.get("model") != current["model"]:
        raise StateMismatchError(f"{where} belongs to another model (its weights differ from this one's). {fix}")
    if saved.get("data") != current["data"]:
        raise StateMismatchError(f"{where} belongs to other data: {_describe_data(saved.get('data'))}, not {_describe_data(current['data'])}. {fix}")
    saved_settings, settings = _flat(saved.get("settings", {})), _flat(current["settings"])
    differing = sorted(key for key in set(saved_settings) | set(settings) if saved_settings.get(key) != settings.get(key))
    if not differing:
        return
    listed = "; ".join(f"{key}: saved {saved_settings.get(key)!r}, now {settings.get(key)!r}" for key in differing)
    if diverged is None:
        raise StateMismatchError(f"{where} was written with other settings ({listed}). {fix}")
    if all(_is_lower_rate(key, saved_settings.get(key), settings.get(key)) for key in differing):
        return  # the run stopped on a diverging loss: continuing it more gently is what the message asked for
    raise StateMismatchError(
        f"{where} stopped when its loss diverged (phase {diverged.get('phase')!r}, learning rate {diverged.get('learning_rate')!r}); "
        f"it resumes with a lower learning rate and otherwise the same settings, but these differ: {listed}. {fix}"
    )


def _is_lower_rate(key: str, saved, current) -> bool:
    numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (saved, current))
    return key.rpartition(".")[2] == "learning_rate" and numbers and current < saved


def _flat(settings: dict, prefix: str = "") -> dict:
    """Nested settings as dotted keys, so a difference names the one setting (`train_config.learning_rate`)."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _describe_data(fingerprint: dict | None) -> str:
    if fingerprint is None:
        return "no data"
    return f"dataset {fingerprint['name']!r} ({fingerprint['num_classes']} classes, samples {fingerprint['samples']})"


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    # The rename itself is durable only once the folder's entry is on disk.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
