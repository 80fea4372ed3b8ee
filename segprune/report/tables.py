"""A sweep's rows as tables: the balance point, results.json and results.csv."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from segprune._io import write_text


def balance_point(rows: list[dict], tolerance: float) -> dict | None:
    """The fastest timed network within `tolerance` Dice points of the dense model.

    Returns None when there is no dense row or no timed row; the dense row itself when no pruned network is
    both within tolerance and faster.

    Example:
        >>> balance_point([{"method": "dense", "dice": 0.95, "latency_ms": 20.0}], tolerance=1.0)["method"]
        'dense'
    """
    dense = next((row for row in rows if row["method"] == "dense"), None)
    if dense is None:
        return None
    floor = dense["dice"] - tolerance / 100.0
    timed = [row for row in rows if row.get("latency_ms") is not None and row["dice"] >= floor]
    return min(timed, key=lambda row: row["latency_ms"], default=None)


def best_deployments(rows: list[dict], tolerance: float) -> list[dict]:
    """Per network row, its fastest deployment (runtime and precision) within `tolerance` Dice points of dense.

    Returns one dict per network row that has deployments: the row's method and budget and the chosen
    deployment's fields; `deployment` is None when no runtime/precision of that row keeps Dice in tolerance.
    """
    dense = next((row for row in rows if row["method"] == "dense"), None)
    if dense is None:
        return []
    floor = dense["dice"] - tolerance / 100.0
    best = []
    for row in rows:
        kept = [d for d in row.get("deployments") or [] if d["dice"] >= floor]
        if not row.get("deployments"):
            continue
        fastest = min(kept, key=lambda deployment: deployment["latency_ms"], default=None)
        best.append({"method": row["method"], "budget": row["budget"], "deployment": fastest})
    return best


def write_tables(rows: list[dict], out_dir: str | Path, stem: str = "results") -> None:
    """Writes `<stem>.json` and `<stem>.csv` (one row per candidate, every column) into `out_dir`."""
    out_dir = Path(out_dir)
    write_text(out_dir / f"{stem}.json", json.dumps(rows, indent=2) + "\n")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    write_text(out_dir / f"{stem}.csv", buffer.getvalue())


def _cell(value):
    """Lists and dicts (notes, deployments) as JSON in a CSV cell."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value
