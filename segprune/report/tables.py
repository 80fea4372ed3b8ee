"""A sweep's rows as tables: the balance point, results.json and results.csv."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from segprune._io import write_text


def balance_point(rows: list[dict], tolerance: float) -> dict | None:
    """The fastest timed network whose paired Dice-loss interval lies within `tolerance` Dice points of dense.

    A pruned row qualifies only when the upper end of its `dice_loss_interval` (a paired bootstrap over the
    test images, `experiments.sweep.with_paired_losses`) is at most `tolerance` points: a row whose interval
    crosses the tolerance may have lost more, and is never chosen (`undecided_rows` names it). A row without
    an interval (a log written before segprune kept per-image counts) is judged on its point figure.

    Returns None when there is no dense row or no timed row; the dense row itself when no pruned network is
    both surely within tolerance and faster.

    Example:
        >>> balance_point([{"method": "dense", "dice": 0.95, "latency_ms": 20.0}], tolerance=1.0)["method"]
        'dense'
    """
    dense = next((row for row in rows if row["method"] == "dense"), None)
    if dense is None:
        return None
    timed = [row for row in rows if row.get("latency_ms") is not None and (row is dense or within_tolerance(row, dense, tolerance))]
    return min(timed, key=lambda row: row["latency_ms"], default=None)


def loss_interval(row: dict) -> tuple[float, float] | None:
    """A row's paired 95% interval of its Dice loss against dense (fractions), or None when it has none."""
    interval = row.get("dice_loss_interval")
    if not interval or interval[0] is None or interval[1] is None:
        return None
    return float(interval[0]), float(interval[1])


def within_tolerance(row: dict, dense: dict, tolerance: float, extra_loss: float = 0.0) -> bool:
    """Whether `row` surely lost at most `tolerance` Dice points: the upper end of its loss interval (plus
    `extra_loss`, a fraction) is within it; the point loss where the row has no interval."""
    interval = loss_interval(row)
    upper = dense["dice"] - row["dice"] if interval is None else interval[1]
    return upper + extra_loss <= tolerance / 100.0


def undecided_rows(rows: list[dict], balance: dict | None, tolerance: float) -> list[dict]:
    """Timed pruned rows faster than `balance` whose loss interval crosses the tolerance: the test images cannot
    tell whether they kept the accuracy (their loss may be within `tolerance` points, or beyond it).

    Example:
        >>> [row["method"] for row in undecided_rows(rows, balance_point(rows, 1.0), 1.0)]
        ['oneshot-l1']
    """
    limit = None if balance is None else balance.get("latency_ms")
    undecided = []
    for row in rows:
        interval = loss_interval(row)
        if row["method"] == "dense" or row.get("latency_ms") is None or interval is None:
            continue
        if interval[0] <= tolerance / 100.0 < interval[1] and (limit is None or row["latency_ms"] < limit):
            undecided.append(row)
    return sorted(undecided, key=lambda row: row["latency_ms"])


def indistinguishable_from_dense(row: dict) -> bool:
    """Whether a row's paired loss interval holds zero: on these test images it cannot be told apart from dense."""
    interval = loss_interval(row)
    return interval is not None and interval[0] <= 0.0 <= interval[1]


def best_deployments(rows: list[dict], tolerance: float) -> list[dict]:
    """Per network row, its fastest deployment (runtime and precision) surely within `tolerance` Dice points of dense.

    A deployment qualifies when its network's paired loss interval, shifted by what the deployment loses
    against the network's own fp32 Dice (int8 rounding; measured without per-image counts, so a point figure),
    lies within the tolerance. Returns one dict per network row that has deployments: the row's method and
    budget and the chosen deployment's fields; `deployment` is None when no runtime/precision of that row keeps
    Dice in tolerance.
    """
    dense = next((row for row in rows if row["method"] == "dense"), None)
    if dense is None:
        return []
    best = []
    for row in rows:
        if not row.get("deployments"):
            continue
        if row is dense:
            kept = [deployment for deployment in row["deployments"] if deployment["dice"] >= dense["dice"] - tolerance / 100.0]
        else:
            kept = [d for d in row["deployments"] if within_tolerance(row, dense, tolerance, extra_loss=row["dice"] - d["dice"])]
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
