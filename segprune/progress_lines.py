"""Progress as one line per event: a training epoch, a search's plan, a search candidate.

The command line prints these lines, `segprune.prune` and `segprune.sparsify` print them by default (to
stderr; `progress=False` turns them off), and a sweep passes them to its own progress callback, so a run
reads the same whichever way it was started. Nothing here imports a framework.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from segprune.training import EpochRecord, TrainResult


def epoch_line(record: EpochRecord, result: TrainResult, epochs: int) -> str:
    """Loss, validation Dice, the best so far and seconds of one epoch."""
    marker = " *" if result.best_epoch == record.epoch else ""
    return (
        f"epoch {record.epoch:>3}/{epochs}  loss {record.loss:.4f}  val Dice {record.val_dice:.4f}"
        f"  best {result.best_val_dice:.4f} (epoch {result.best_epoch})  {record.seconds:.1f}s{marker}"
    )


def detector_epoch_line(record: dict, result, epochs: int) -> str:
    """A Mask R-CNN epoch: its mean losses, validation mask AP, the best so far, seconds."""
    marker = " *" if result.best_epoch == record["epoch"] else ""
    losses = "  ".join(f"{name} {record[name]:.3f}" for name in ("rpn_objectness", "rpn_box", "classifier", "box", "mask") if name in record)
    return (
        f"epoch {record['epoch']:>3}/{epochs}  {losses}  val mask AP {record['validation']:.4f}"
        f"  best {result.best_score:.4f} (epoch {result.best_epoch})  {record['seconds']:.1f}s{marker}"
    )


def plan_line(plan: dict) -> str:
    """A search's plan before its first candidate: how many candidates it expects."""
    resumed = f"; {plan['evaluated']} already evaluated (resumed)" if plan["evaluated"] else ""
    return f"{plan['method']}: about {plan['expected']} candidates ({plan['description']}){resumed}"


def candidate_line(record: dict, best: dict, metric: str = "val Dice") -> str:
    """One evaluated search candidate: its share of the dense resource, its score, and the search's count and time."""
    where = f"step {record['iteration'] + 1} {record['key']}" if "iteration" in record else f"candidate {record['index'] + 1}"
    timing = ""
    if "elapsed" in record:
        left = "estimating time left" if record["remaining"] is None else f"~{minutes(record['remaining'])} left"
        timing = f"; {record['done']}/{record['expected']}, {minutes(record['elapsed'])} elapsed, {left}"
    return f"{where}: {record['share']:.3f} of dense, {metric} {record['score']:.4f} ({record['seconds']:.1f}s); best {best['score']:.4f}{timing}"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


class LineReporters:
    """The callbacks of `prune` / `sparsify` that turn each event into a line for `say`.

    Args:
        say: Where each line goes (the default writes it to stderr).
        detector: Epochs are a Mask R-CNN's (mask AP, not Dice).
        prefix: Put before every line (a sweep names the cell it runs).

    Example:
        >>> reporters = LineReporters(prefix="greedy 0.25: ")
        >>> segprune.prune(model, "greedy", target="flops=0.25", data=data, on_epoch=reporters.epoch,
        ...                on_candidate=reporters.candidate, on_search_start=reporters.plan)
    """

    def __init__(self, say: Callable[[str], None] | None = None, detector: bool = False, prefix: str = "") -> None:
        self.say = say or _to_stderr
        self.detector = detector
        self.prefix = prefix

    def epoch(self, record, result, epochs: int) -> None:
        self.say(self.prefix + (detector_epoch_line if self.detector else epoch_line)(record, result, epochs))

    def plan(self, plan: dict) -> None:
        self.say(self.prefix + plan_line(plan))

    def candidate(self, record: dict, best: dict) -> None:
        self.say(self.prefix + candidate_line(record, best, "val mask AP" if self.detector else "val Dice"))


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
