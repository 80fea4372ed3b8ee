"""Training: `train` (loop.py), what a run did and its JSON record (result.py), the per-epoch checkpoint
state of one run (checkpoint.py), the state of a pruning run made of phases (run_state.py) and `train` as one
of those phases (phases.py)."""

from segprune.training.loop import DistillConfig, TrainConfig, TrainingDiverged, steps_per_epoch, teacher_soft_targets, train
from segprune.training.phases import train_phase, train_phase_with_trajectory
from segprune.training.result import EpochRecord, EpochReporter, TrainResult, training_from_record, training_record
from segprune.training.run_state import RunInterrupted, RunState, StateMismatchError

__all__ = [
    "DistillConfig",
    "EpochRecord",
    "EpochReporter",
    "RunInterrupted",
    "RunState",
    "StateMismatchError",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "steps_per_epoch",
    "teacher_soft_targets",
    "train",
    "train_phase",
    "train_phase_with_trajectory",
    "training_from_record",
    "training_record",
]
