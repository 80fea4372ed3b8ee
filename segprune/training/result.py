"""What a training run did (`TrainResult`, one `EpochRecord` per epoch) and its one JSON form.

`training_record` and `training_from_record` are the only translation between a `TrainResult` and JSON:
`train` keeps the record in its per-epoch checkpoint state and a pruning run keeps one per finished phase in
its run state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    val_dice: float
    seconds: float


@dataclass
class TrainResult:
    """What happened in a training run.

    Attributes:
        history: One record per finished epoch.
        best_epoch: The epoch (1-based) whose weights the model holds at the end.
        best_val_dice: Its validation Dice.
        stopped_early: Whether patience ran out.
        interrupted: Whether Ctrl-C ended the run (the best weights so far are still restored).
        seconds: Wall-clock time of the whole run.
        images_seen: Training patches processed.
    """

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_dice: float = float("-inf")
    stopped_early: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    images_seen: int = 0


EpochReporter = Callable[[EpochRecord, TrainResult, int], None]


def training_record(result: TrainResult) -> dict:
    """`result` as JSON: everything but `interrupted`, which only says how the run in this process ended.

    Example:
        >>> training_from_record(json.loads(json.dumps(training_record(result)))) == result
        True
    """
    return {
        "history": [asdict(record) for record in result.history],
        "best_epoch": result.best_epoch,
        "best_val_dice": result.best_val_dice,
        "images_seen": result.images_seen,
        "seconds": result.seconds,
        "stopped_early": result.stopped_early,
    }


def training_from_record(record: dict) -> TrainResult:
    """The `TrainResult` a `training_record` describes (a checkpoint state written before `seconds` and
    `stopped_early` were kept reads them as 0 and False)."""
    return TrainResult(
        history=[EpochRecord(**epoch) for epoch in record["history"]], best_epoch=record["best_epoch"],
        best_val_dice=record["best_val_dice"], stopped_early=record.get("stopped_early", False), seconds=record.get("seconds", 0.0),
        images_seen=record["images_seen"],
    )
