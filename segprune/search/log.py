"""The JSON-lines log of a search: one header, one line per evaluated candidate, one per greedy step.

Every line is flushed and fsynced as it is written, so a search killed at any moment leaves a log that
ends in a complete line (a torn last line is ignored on reading). `--resume` replays the log: finished
candidates are not evaluated again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


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
        self.records: list[dict] = []
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise ValueError(
                    f"A search log already exists at {str(self.path)!r}. Continue it with --resume, or choose another --out."
                )
            self.records = _read(self.path)
            saved = self.records[0] if self.records and self.records[0].get("type") == "header" else None
            if check and (saved is None or saved["settings"] != header):
                raise ValueError(
                    f"The search log at {str(self.path)!r} was written with other settings ({saved and saved['settings']}); "
                    "resume with the same options, or choose another --out."
                )
            self.records = self.records[1:]
            if check:
                _truncate_torn_line(self.path)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.write({"type": "header", "settings": header})

    def write(self, record: dict) -> None:
        if record.get("type") != "header":
            self.records.append(record)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def of_type(self, kind: str) -> list[dict]:
        return [record for record in self.records if record.get("type") == kind]


def _read(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill; everything before it is complete
    return records


def _truncate_torn_line(path: Path) -> None:
    text = path.read_text()
    if text and not text.endswith("\n"):
        path.write_text(text[: text.rfind("\n") + 1])


def open_search(model, folder, method: dict, settings, candidate_settings, resume: bool):
    """Creates (or reopens, to resume) a search folder: its log, its budget, and the dense model saved in it.

    `method` holds the method's own settings for the log header; the worker count is left out of the
    header, since it does not change what a search chooses.
    """
    from dataclasses import asdict

    from segprune._io import save_model
    from segprune.search.budget import Budget

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    candidates = asdict(candidate_settings)
    candidates["batches"] = asdict(candidate_settings.batches)
    header = {**method, **asdict(settings), **candidates}
    header.pop("workers")
    header.pop("time_result")
    log = SearchLog(folder / "search.jsonl", header, resume)
    budget = Budget(model, settings, folder)
    dense_path = folder / "dense.keras"
    if not dense_path.exists():
        save_model(model, dense_path)
    return log, budget, dense_path
