"""The per-epoch checkpoint state of one `train` run, kept beside its checkpoint until the run finishes.

`train` writes its state atomically beside the checkpoint after every epoch (`unet.keras` ->
`unet.keras.resume.npz`: weights, optimizer slots, the random-generator states of gates, the best weights and
the run's `training_record`) and removes it when the run finishes, so its presence means "interrupted, can be
resumed". Every write is a temporary file, fsynced, then renamed over the old one, so a kill at any moment
leaves the previous state usable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np

from segprune._io import atomic_path


def state_path(checkpoint_path: str | Path) -> Path:
    """Where `train` keeps the state of a run writing `checkpoint_path`: `out.keras` -> `out.keras.resume.npz`."""
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(checkpoint_path.name + ".resume.npz")


def save_state(path: Path, model: keras.Model, best_weights: list[np.ndarray], record: dict) -> None:
    """Writes the current weights, optimizer variables, random-generator states, best weights and `record` (JSON-safe)."""
    arrays = {}
    for prefix, values in (
        ("weight", model.get_weights()),
        ("optimizer", [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]),
        ("random", [keras.ops.convert_to_numpy(v) for v in _random_states(model)]),
        ("best", best_weights or []),
    ):
        arrays.update({f"{prefix}_{index:05d}": value for index, value in enumerate(values)})
    arrays["summary"] = np.array(json.dumps(record))
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
            _sync(handle)


def load_state(path: Path, model: keras.Model) -> tuple[list[np.ndarray], dict]:
    """Restores weights, optimizer variables and random-generator states into a compiled `model`; returns (best weights, record)."""
    with np.load(path, allow_pickle=False) as archive:
        groups = {prefix: _group(archive, prefix) for prefix in ("weight", "optimizer", "random", "best")}
        record = json.loads(str(archive["summary"]))
    expected = [tuple(w.shape) for w in model.get_weights()]
    if [tuple(w.shape) for w in groups["weight"]] != expected:
        raise ValueError(
            f"The training state in {str(path)!r} belongs to a different model (its weight shapes differ). "
            "Resume with the same --model and options, or delete the file to start over."
        )
    model.set_weights(groups["weight"])
    model.optimizer.build(model.trainable_variables)
    if len(model.optimizer.variables) != len(groups["optimizer"]):
        raise ValueError(f"The optimizer state in {str(path)!r} does not fit this optimizer; delete the file to start over.")
    for variable, value in zip(model.optimizer.variables, groups["optimizer"]):
        variable.assign(value)
    random_states = _random_states(model)
    if len(random_states) == len(groups["random"]):  # a state written before these were kept has none
        for variable, value in zip(random_states, groups["random"]):
            variable.assign(value)
    return groups["best"], record


def _random_states(model: keras.Model) -> list:
    # The sampling state of hard-concrete gates (a SeedGenerator with a fixed seed) is a variable but not a
    # weight; without it a resumed L0 run would draw other gate samples than an uninterrupted one.
    return [variable for variable in model.variables if variable.name == "seed_generator_state"]


def _group(archive, prefix: str) -> list[np.ndarray]:
    names = sorted(name for name in archive.files if name.startswith(prefix + "_"))
    return [archive[name] for name in names]


def _sync(handle) -> None:
    """Flushes an open file to disk (before it is renamed over the old state, so the rename finds it whole)."""
    handle.flush()
    os.fsync(handle.fileno())
