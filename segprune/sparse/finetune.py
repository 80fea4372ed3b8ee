"""Fine-tuning a `SparseModel` with segprune's trainer, recording sparsity and Dice per epoch.

Every trained phase of a pruning run goes through `train_phase`, which keeps the phase's state in the run's
folder (see `segprune.training_state.RunState`), so a killed run resumes at its last finished epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from segprune.data.dataset import SegmentationDataset
from segprune.data.pipeline import TrainingBatches
from segprune.inference import fixed_input_size, input_channels
from segprune.sparse.model import SparseModel, find_weight
from segprune.training import DistillConfig, EpochRecord, EpochReporter, TrainConfig, TrainingDiverged, TrainResult, train
from segprune.training_state import RunState, summary_of


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
    return TrainingBatches(data, "train", input_channels(model), config.batches, patch=fixed_input_size(model)).num_batches


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
    run: RunState | None = None,
    phase: str = "finetune",
) -> TrainResult:
    """`train_phase` with a record of (epoch, sparsity, val Dice) appended to `trajectory` for every epoch.

    The sparsity after each epoch is kept in the run's state with the epoch, so a resumed phase reports
    the epochs of its first part too.
    """
    run = run or RunState(None, {})
    offset = len(trajectory)
    log = _EpochSparsity(run, phase, measure_sparsity)
    result = train_phase(run, phase, model, data, epochs, config or TrainConfig(patience=None), on_epoch, [*callbacks, log], keep_best_from_epoch)
    trajectory.extend(
        {"epoch": offset + record.epoch, "sparsity": float(sparsity), "val_dice": record.val_dice, "seconds": record.seconds}
        for record, sparsity in zip(result.history, run.epoch_values(phase))
    )
    return result


def train_phase(
    run: RunState | None,
    phase: str,
    model: keras.Model,
    data: SegmentationDataset,
    epochs: int,
    config: TrainConfig | None,
    on_epoch: EpochReporter | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    keep_best_from_epoch: int = 1,
    teacher: keras.Model | None = None,
    distill: DistillConfig | None = None,
) -> TrainResult:
    """`train` as phase `phase` of `run`: its state is kept in the run's folder and resumed from there.

    Raises `RunInterrupted` when Ctrl-C stopped it (the state of its last finished epoch is kept).
    """
    run = run or RunState(None, {})
    checkpoint = run.checkpoint(phase)
    try:
        result = train(
            model, data, epochs, config, checkpoint_path=checkpoint, on_epoch=on_epoch, resume=checkpoint is not None,
            callbacks=[*callbacks, *run.callbacks()], keep_best_from_epoch=keep_best_from_epoch, teacher=teacher, distill=distill,
        )
    except TrainingDiverged as diverged:  # said for the pruning run, whose state is its folder
        lower = f"{diverged.learning_rate / 10:g}"
        if run.folder is not None:
            run.mark_diverged(phase, diverged.epoch, diverged.learning_rate)
            how = (
                f"its state up to the last good epoch is kept in {str(run.folder)!r}. Resume it with a lower learning rate (the one "
                f"setting a resume may change after this): --resume --learning-rate {lower} on the command line, "
                f"resume=True, train_config=TrainConfig(learning_rate={lower}, ...) in Python."
            )
        else:
            how = f"run again with a lower learning rate: train_config=TrainConfig(learning_rate={lower}, ...) in Python."
        raise TrainingDiverged(
            f"The loss of the {phase!r} fine-tune became non-finite in epoch {diverged.epoch} (peak learning rate "
            f"{diverged.learning_rate:g}); the run stopped: {how}",
            diverged.epoch, diverged.learning_rate,
        ) from None
    run.raise_if_interrupted(result.interrupted)
    return result


def training_record(result: TrainResult) -> dict:
    """A finished phase's `TrainResult` as JSON, for the run's state."""
    return {**summary_of(result), "seconds": result.seconds, "stopped_early": result.stopped_early}


def training_from_record(record: dict) -> TrainResult:
    return TrainResult(
        history=[EpochRecord(**epoch) for epoch in record["history"]], best_epoch=record["best_epoch"],
        best_val_dice=record["best_val_dice"], stopped_early=record["stopped_early"], seconds=record["seconds"],
        images_seen=record["images_seen"],
    )


class _EpochSparsity(keras.callbacks.Callback):
    """Measures sparsity at the end of every epoch, before `train` saves that epoch's state."""

    def __init__(self, run: RunState, phase: str, measure) -> None:
        super().__init__()
        self.run, self.phase, self.measure = run, phase, measure

    def on_epoch_end(self, epoch, logs=None):
        self.run.record_epoch(self.phase, float(self.measure()), epoch)


def effective_sparsity(sparse_model: SparseModel) -> float:
    """Share of gated weights that are exactly zero after gating (deterministic gates)."""
    size = zeros = 0
    for _, value in sparse_model.gated_weights(sparse_model.gate_values(training=False)):
        array = keras.ops.convert_to_numpy(value)
        size += array.size
        zeros += int(np.count_nonzero(array == 0))
    return zeros / size if size else 0.0
