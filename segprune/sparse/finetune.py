"""Fine-tuning a `SparseModel` with segprune's trainer, recording sparsity and Dice per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from segprune.data.dataset import SegmentationDataset
from segprune.data.pipeline import TrainingBatches
from segprune.inference import input_channels
from segprune.sparse.model import SparseModel, find_weight
from segprune.training import EpochRecord, EpochReporter, TrainConfig, TrainResult, train


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


def steps_per_epoch(model: keras.Model, data: SegmentationDataset, config: TrainConfig) -> int:
    return TrainingBatches(data, "train", input_channels(model), config.batches).num_batches


def kernel_sparsity(model: keras.Model, sites: Sequence, near_zero: float = 0.0) -> float:
    """Share of kernel weights with |w| <= near_zero across `sites` (objects with .layer and .weight)."""
    size = zeros = 0
    for site in sites:
        value = keras.ops.convert_to_numpy(find_weight(model, site.layer, site.weight))
        size += value.size
        zeros += int(np.count_nonzero(np.abs(value) <= near_zero))
    return zeros / size if size else 0.0


def finetune(
    model: keras.Model,
    data: SegmentationDataset,
    epochs: int,
    config: TrainConfig | None,
    measure_sparsity,
    trajectory: list[dict],
    on_epoch: EpochReporter | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    keep_best_from_epoch: int = 1,
) -> TrainResult:
    """`train` with a record of (epoch, sparsity, val Dice) appended to `trajectory` after every epoch."""
    offset = len(trajectory)

    def record(epoch_record: EpochRecord, result: TrainResult, total: int) -> None:
        trajectory.append(
            {
                "epoch": offset + epoch_record.epoch,
                "sparsity": float(measure_sparsity()),
                "val_dice": epoch_record.val_dice,
                "seconds": epoch_record.seconds,
            }
        )
        if on_epoch is not None:
            on_epoch(epoch_record, result, total)

    config = config or TrainConfig(patience=None)
    return train(model, data, epochs, config, on_epoch=record, callbacks=callbacks, keep_best_from_epoch=keep_best_from_epoch)


def effective_sparsity(sparse_model: SparseModel) -> float:
    """Share of gated weights that are exactly zero after gating (deterministic gates)."""
    size = zeros = 0
    for variable, value in sparse_model.gated_weights(sparse_model.gate_values(training=False)):
        array = keras.ops.convert_to_numpy(value)
        size += array.size
        zeros += int(np.count_nonzero(array == 0))
    return zeros / size if size else 0.0
