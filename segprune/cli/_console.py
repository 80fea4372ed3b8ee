"""Progress and tables on the terminal. Progress goes to stderr so that `--json` output stays clean."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
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
# another implementation, whatever TF_CPP_MIN_LOG_LEVEL says, and its Python logger's note that predict was traced
# again for a new input shape (the demo evaluates tiles of several sizes); none asks anything of the user.
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
    r"|triggered tf\.function retracing"
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
    passed_read, passed_write = os.pipe()  # the filter writes one byte here once it has passed this process's last line
    marker = f"segprune-stderr-end-{secrets.token_hex(8)}"
    passer = subprocess.Popen(
        [sys.executable, "-S", "-c", _PASS_LINES, FRAMEWORK_NOISE.pattern, marker, str(passed_write)],
        stdin=read_end, stdout=terminal, start_new_session=True, pass_fds=(passed_write,),
    )
    os.close(read_end)
    os.close(passed_write)
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        with contextlib.suppress(OSError):  # a filter that is gone (its terminal closed) passes nothing more
            os.write(fd, f"{marker}\n".encode())
        os.dup2(terminal, fd)
        os.close(terminal)
        # Wait for the marker, not for the pipe's end: a child of the run (a search worker pool's resource tracker) may
        # hold the pipe until this process exits, and waiting for that cost every such run 2 s.
        select.select([passed_read], [], [], 2.0)
        os.close(passed_read)
        passer.poll()


def _writes_to(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


# The filter process: each line from stdin to stdout unless the pattern (argv[1]) finds framework noise in it; the
# marker line (argv[2], after the run's last line, perhaps a partial one) is not passed but answered on fd argv[3].
_PASS_LINES = """
import os, re, sys
noise, marker, passed = re.compile(sys.argv[1]), sys.argv[2].encode() + b"\\n", int(sys.argv[3])
for line in sys.stdin.buffer:
    ended = line.endswith(marker)
    line = line[:-len(marker)] if ended else line
    if line and not noise.search(line.decode(errors="replace")):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    if ended:
        os.write(passed, b".")
"""
