"""A search's cost as it goes: candidates expected, time spent, an estimate of the time left, the time limit.

Searches are many candidates; users accept that when they see the cost up front and can bound it. A
`SearchClock` counts the candidates this run evaluates, estimates the time left from their mean wall-clock
time (so parallel workers are accounted for) once a few have finished, and says when `max_minutes` is spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

ESTIMATE_AFTER = 3  # candidates of this run before the time left is estimated

_now = time.perf_counter  # the clock (tests replace it)
StartReporter = Callable[[dict], None]  # the plan: {"method", "expected", "evaluated", "description"}


class SearchTimeLimit(ValueError):
    """A search reached its time limit before it had anything to return (no greedy step, no candidate)."""


class SearchClock:
    """Counts a search's candidates and its time.

    Args:
        expected: Candidates the whole search is expected to evaluate (resumed ones included).
        evaluated: Candidates an earlier, interrupted run already evaluated (read back from the log).
        max_minutes: Stop starting candidates after this many minutes of this run (None: no limit).

    Example:
        >>> clock = SearchClock(expected=170, evaluated=0, max_minutes=5)
        >>> progress = clock.finished()  # after each candidate
        >>> progress["remaining"]  # seconds, None until a few candidates have finished
    """

    def __init__(self, expected: int, evaluated: int = 0, max_minutes: float | None = None) -> None:
        if max_minutes is not None and max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {max_minutes}.")
        self.expected = expected
        self.done = evaluated
        self.resumed = evaluated
        self.max_minutes = max_minutes
        self.started = _now()

    def elapsed(self) -> float:
        return _now() - self.started

    def finished(self) -> dict:
        """Counts one finished candidate; returns `{"done", "expected", "elapsed", "remaining"}` (seconds)."""
        self.done += 1
        self.expected = max(self.expected, self.done)
        return self.progress()

    def progress(self) -> dict:
        this_run = self.done - self.resumed
        elapsed = self.elapsed()
        remaining = None
        if this_run >= ESTIMATE_AFTER:
            remaining = elapsed / this_run * max(self.expected - self.done, 0)
        return {"done": self.done, "expected": self.expected, "elapsed": elapsed, "remaining": remaining}

    def out_of_time(self) -> bool:
        return self.max_minutes is not None and self.elapsed() >= 60.0 * self.max_minutes
