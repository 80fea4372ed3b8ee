"""The resumable state of a training run: weights, optimizer slots, best epoch and history.

It is written atomically beside the checkpoint after every epoch (`unet.keras` -> `unet.keras.resume.npz`)
and removed when the run finishes, so its presence means "interrupted, can be resumed".
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from segprune._io import atomic_path


def state_path(checkpoint_path: str | Path) -> Path:
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(checkpoint_path.name + ".resume.npz")


def save_state(path: Path, model: keras.Model, best_weights: list[np.ndarray], summary: dict) -> None:
    """Writes the current weights, optimizer variables, best weights and a JSON summary."""
    arrays = {}
    for prefix, values in (
        ("weight", model.get_weights()),
        ("optimizer", [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]),
        ("best", best_weights or []),
    ):
        arrays.update({f"{prefix}_{index:05d}": value for index, value in enumerate(values)})
    arrays["summary"] = np.array(json.dumps(summary))
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)


def load_state(path: Path, model: keras.Model) -> tuple[list[np.ndarray], dict]:
    """Restores weights and optimizer variables into a compiled `model`; returns (best weights, summary)."""
    with np.load(path, allow_pickle=False) as archive:
        groups = {prefix: _group(archive, prefix) for prefix in ("weight", "optimizer", "best")}
        summary = json.loads(str(archive["summary"]))
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
    return groups["best"], summary


def _group(archive, prefix: str) -> list[np.ndarray]:
    names = sorted(name for name in archive.files if name.startswith(prefix + "_"))
    return [archive[name] for name in names]


def summary_of(result) -> dict:
    """The JSON-safe part of a `TrainResult`."""
    return {
        "history": [asdict(record) for record in result.history],
        "best_epoch": result.best_epoch,
        "best_val_dice": result.best_val_dice,
        "images_seen": result.images_seen,
    }
