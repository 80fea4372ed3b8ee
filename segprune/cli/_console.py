"""Progress and tables on the terminal. Progress goes to stderr so that `--json` output stays clean."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from segprune.progress_lines import detector_epoch_line, epoch_line

if TYPE_CHECKING:  # annotations only: the console must not start TensorFlow
    from segprune.training import EpochRecord, TrainResult

# Without a terminal (pipes, CI logs) rich would wrap tables at 80 columns; logs are read wide.
# force_terminal: while a command runs, stderr is the pipe of `framework_noise_filtered`, and a terminal stays one.
progress_console = Console(
    stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160, force_terminal=True if sys.stderr.isatty() else None
)
output_console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

# Lines TensorFlow's C++ runtime writes straight to file descriptor 2 at start-up and when a kernel falls back to
# another implementation, whatever TF_CPP_MIN_LOG_LEVEL says; none asks anything of the user.
FRAMEWORK_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|oneDNN supports DT_\w+ only on"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
)


def print_epoch(record: EpochRecord, result: TrainResult, epochs: int) -> None:
    """One line per epoch: loss, validation Dice, the best so far, seconds (as `segprune.prune` prints it)."""
    progress_console.print(epoch_line(record, result, epochs))


def print_detector_epoch(record: dict, result, epochs: int) -> None:
    """One line per Mask R-CNN epoch: its mean losses, validation mask AP, the best so far, seconds."""
    progress_console.print(detector_epoch_line(record, result, epochs))


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


@contextlib.contextmanager
def framework_noise_filtered(fd: int = 2) -> Iterator[None]:
    """Within it, whatever is written to `fd` (stderr) reaches it line by line, except `FRAMEWORK_NOISE`.

    TensorFlow writes those lines from C++, below Python, so they are filtered at the file descriptor: `fd`
    becomes a pipe that a thread reads. Every other line, errors and Python tracebacks included, passes
    unchanged. Nothing is filtered when Python's own stderr is not `fd` (a test capturing it, say).
    """
    if fd == 2 and not _writes_to(sys.stderr, fd):
        yield
        return
    sys.stderr.flush()
    terminal = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    passer = threading.Thread(target=_pass_lines, args=(read_end, terminal), name="segprune-stderr-filter", daemon=True)
    passer.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, fd)  # the pipe's last write end closes: the thread reads what is left, then stops
        passer.join(timeout=2.0)  # a child process still holding the pipe keeps it open; lines it writes still pass
        if not passer.is_alive():
            os.close(terminal)


def _writes_to(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


def _pass_lines(read_end: int, terminal: int) -> None:
    with os.fdopen(read_end, "rb") as lines:
        for line in lines:
            if not FRAMEWORK_NOISE.search(line.decode(errors="replace")):
                os.write(terminal, line)
