"""The JSON-lines log of a search: one header, one line per evaluated candidate, one per greedy step.

Every line is flushed and fsynced as it is written, so a search killed at any moment leaves a log that
ends in a complete line (a torn last line is ignored on reading). `--resume` replays the log: finished
candidates are not evaluated again.
"""

from __future__ import annotations

import json
from pathlib import Path

from segprune._jsonlines import JsonLines


class SearchLog:
    """Appends records to `path`; `records` holds what an earlier, interrupted run wrote.

    Args:
        path: The log file.
        header: The search's settings; a resumed log must have been written with the same ones.
        resume: Continue the log at `path`. Without it an existing log is an error, never overwritten.
        check: Compare the header (off only for reading a finished log).

    Example:
        >>> log = SearchLog(Path("runs/search/log.jsonl"), {"method": "greedy", "target": "flops=0.25"}, resume=False)
        >>> log.write({"type": "candidate", "index": 0, "score": 0.91})
    """

    def __init__(self, path: Path, header: dict, resume: bool, check: bool = True) -> None:
        self.path = Path(path)
        self.lines = JsonLines(self.path)
        self.records: list[dict] = []
        if self.lines.exists():
            if not resume:
                raise ValueError(
                    f"A search log already exists at {str(self.path)!r}. Continue it with --resume, or choose another --out."
                )
            self.records = self.lines.read()
            saved = self.records[0] if self.records and self.records[0].get("type") == "header" else None
            if check:
                self._check_header(saved, header)
            self.records = self.records[1:]
            if check:
                self.lines.repair()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.write({"type": "header", "settings": header})

    def _check_header(self, saved: dict | None, header: dict) -> None:
        """Refuses to resume a log written with other settings, naming each one that differs, as saved and as asked.

        A setting the saved header lacks reads as None, so a log from before that setting was recorded resumes when
        it is left at None."""
        if saved is None:
            raise ValueError(f"{str(self.path)!r} has no search header (it is not a search log, or its first line was lost); choose another --out.")
        saved_settings, settings = saved["settings"], json.loads(json.dumps(header))  # as written: tuples read back as lists
        differing = sorted(key for key in {*saved_settings, *settings} if saved_settings.get(key) != settings.get(key))
        if differing:
            listed = "; ".join(f"{key}: saved {saved_settings.get(key)!r}, now {settings.get(key)!r}" for key in differing)
            raise ValueError(
                f"The search log at {str(self.path)!r} was written with other settings ({listed}); resume with the saved values, "
                "or choose another --out."
            )

    def write(self, record: dict) -> None:
        if record.get("type") != "header":
            self.records.append(record)
        self.lines.append(record)

    def of_type(self, kind: str) -> list[dict]:
        return [record for record in self.records if record.get("type") == kind]
