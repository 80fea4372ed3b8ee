"""An append-only JSON-lines file that survives a kill at any moment.

Every record is flushed and fsynced as it is written. A kill mid-write can leave a torn last line; reading
stops before it, and opening the file for appending cuts it off first, so the next record starts on a line
of its own instead of being glued to the torn one (which would lose it and every record after it).
Searches and sweeps keep their progress in such a file and resume by replaying it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class JsonLines:
    """Records appended to `path`, one JSON object per line.

    Example:
        >>> log = JsonLines(Path("runs/sweep/results.jsonl"))
        >>> log.append({"method": "dense", "dice": 0.94})
        >>> log.read()[-1]["dice"]
        0.94
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def read(self) -> list[dict]:
        """Every complete record; a torn line (a write cut by a kill) is left out."""
        if not self.path.exists():
            return []
        return [record for record in map(_decoded, self.path.read_text().splitlines()) if record is not None]

    def repair(self) -> None:
        """Cuts a torn last line off, so that the next append starts a line of its own."""
        if not self.path.exists():
            return
        text = self.path.read_text()
        # Besides a torn last line, a file written before this repair existed may hold a torn line with a
        # record glued to it: keep every line that decodes.
        repaired = "".join(line for line in text.splitlines(keepends=True) if line.endswith("\n") and _decoded(line) is not None)
        if repaired != text:
            with open(self.path, "w") as handle:
                handle.write(repaired)
                handle.flush()
                os.fsync(handle.fileno())

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _decoded(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
