"""A pruning run's trained phases: `train` as one phase of a `RunState`, resumed from the run's folder.

Every trained phase of a pruning run (a regularised or masked fine-tune, the final fine-tune) goes through
`train_phase`, which keeps the phase's checkpoint state in the run's folder, so a killed run resumes at its
last finished epoch, and words a diverging loss or a Ctrl-C for the run as a whole. A finished phase's
`TrainResult` is kept in the run state as its `training_record`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from segprune.data.dataset import SegmentationDataset
from segprune.training.loop import DistillConfig, TrainConfig, TrainingDiverged, train
from segprune.training.result import EpochReporter, TrainResult
from segprune.training.run_state import RunState


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

    Example:
        >>> with RunState.open("pruned.keras", identity, resume=True) as run:
        ...     result = train_phase(run, "finetune", pruned, data, epochs=20, config=TrainConfig(patience=None))
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


def train_phase_with_trajectory(
    model: keras.Model,
    data: SegmentationDataset,
    epochs: int,
    config: TrainConfig | None,
    measure_sparsity: Callable[[], float],
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

    Example:
        >>> trajectory = []
        >>> train_phase_with_trajectory(gated, data, 10, None, lambda: effective_sparsity(gated), trajectory, run=run, phase="l0")
        >>> [point["epoch"] for point in trajectory]
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
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


class _EpochSparsity(keras.callbacks.Callback):
    """Measures sparsity at the end of every epoch, before `train` saves that epoch's state."""

    def __init__(self, run: RunState, phase: str, measure) -> None:
        super().__init__()
        self.run, self.phase, self.measure = run, phase, measure

    def on_epoch_end(self, epoch, logs=None):
        self.run.record_epoch(self.phase, float(self.measure()), epoch)
