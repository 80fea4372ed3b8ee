"""Sparsity as the sparse methods measure it (over kernels, or after a sparse model's gates) and what a run returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from segprune.sparse.model import SparseModel, find_weight
from segprune.training import TrainResult


@dataclass
class SparsifyResult:
    """The outcome of a sparse-pruning run.

    Attributes:
        model: The plain model with zeros baked in (no gates, no custom classes).
        sparsity: Zeros over all prunable kernel weights, as the method reports it.
        trajectory: Per epoch: `{"epoch", "sparsity", "val_dice", "seconds"}` (for regularisation methods
            `sparsity` counts weights below `near_zero`, since exact zeros only appear at the end).
        training: The fine-tuning runs, in order.
        notes: What the method did beyond the plan (e.g. topping L0's zeros up to the requested sparsity).
    """

    model: keras.Model
    sparsity: float
    trajectory: list[dict] = field(default_factory=list)
    training: list[TrainResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        epochs = [record for run in self.training for record in run.history]
        return float(np.mean([record.seconds for record in epochs])) if epochs else float("nan")


def kernel_sparsity(model: keras.Model, sites: Sequence, near_zero: float = 0.0) -> float:
    """Share of kernel weights with |w| <= near_zero across `sites` (objects with .layer and .weight)."""
    size = zeros = 0
    for site in sites:
        value = keras.ops.convert_to_numpy(find_weight(model, site.layer, site.weight))
        size += value.size
        zeros += int(np.count_nonzero(np.abs(value) <= near_zero))
    return zeros / size if size else 0.0


def effective_sparsity(sparse_model: SparseModel) -> float:
    """Share of gated weights that are exactly zero after gating (deterministic gates)."""
    size = zeros = 0
    for _, value in sparse_model.gated_weights(sparse_model.gate_values(training=False)):
        array = keras.ops.convert_to_numpy(value)
        size += array.size
        zeros += int(np.count_nonzero(array == 0))
    return zeros / size if size else 0.0
