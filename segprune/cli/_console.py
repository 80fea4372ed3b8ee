"""Progress and tables on the terminal. Progress goes to stderr so that `--json` output stays clean."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
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
    becomes a pipe read by a small process of its own, which passes every other line (errors and tracebacks
    included). Being another process, it still passes what a crashing run wrote last, and in its own session
    Ctrl-C does not stop it. Nothing is filtered when Python's own stderr is not `fd` (a test capturing it, say).
    """
    if fd == 2 and not _writes_to(sys.stderr, fd):
        yield
        return
    sys.stderr.flush()
    terminal = os.dup(fd)
    read_end, write_end = os.pipe()
    passer = subprocess.Popen(
        [sys.executable, "-S", "-c", _PASS_LINES, FRAMEWORK_NOISE.pattern], stdin=read_end, stdout=terminal, start_new_session=True
    )
    os.close(read_end)
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, fd)  # the pipe's last write end here closes: the filter passes what is left, then ends
        os.close(terminal)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a child process of the run may hold the pipe a while longer
            passer.wait(timeout=2.0)


def _writes_to(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


# The filter process: each line from stdin to stdout unless the pattern (argv[1]) finds framework noise in it.
_PASS_LINES = """
import re, sys
noise = re.compile(sys.argv[1])
for line in sys.stdin.buffer:
    if not noise.search(line.decode(errors="replace")):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""
