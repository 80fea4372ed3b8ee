"""Progress and tables on the terminal. Progress goes to stderr so that `--json` output stays clean."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # annotations only: the console must not start TensorFlow
    from segprune.training import EpochRecord, TrainResult

# Without a terminal (pipes, CI logs) rich would wrap tables at 80 columns; logs are read wide.
progress_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
output_console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def print_epoch(record: EpochRecord, result: TrainResult, epochs: int) -> None:
    """One line per epoch: loss, validation Dice, the best so far, seconds."""
    marker = " *" if result.best_epoch == record.epoch else ""
    progress_console.print(
        f"epoch {record.epoch:>3}/{epochs}  loss {record.loss:.4f}  val Dice {record.val_dice:.4f}"
        f"  best {result.best_val_dice:.4f} (epoch {result.best_epoch})  {record.seconds:.1f}s{marker}"
    )


def print_detector_epoch(record: dict, result, epochs: int) -> None:
    """One line per Mask R-CNN epoch: its mean losses, validation mask AP, the best so far, seconds."""
    marker = " *" if result.best_epoch == record["epoch"] else ""
    losses = "  ".join(f"{name} {record[name]:.3f}" for name in ("rpn_objectness", "rpn_box", "classifier", "box", "mask") if name in record)
    progress_console.print(
        f"epoch {record['epoch']:>3}/{epochs}  {losses}  val mask AP {record['validation']:.4f}"
        f"  best {result.best_score:.4f} (epoch {result.best_epoch})  {record['seconds']:.1f}s{marker}"
    )


def table(title: str, columns: list[str], rows: list[list]) -> Table:
    rendered = Table(title=title, title_justify="left")
    for column in columns:
        rendered.add_column(column, justify="left" if column in ("model", "layer", "class", "method", "mapping", "target") else "right")
    for row in rows:
        rendered.add_row(*(_format(value) for value in row))
    return rendered


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
