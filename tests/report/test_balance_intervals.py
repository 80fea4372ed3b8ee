"""The balance point trusts only losses whose whole paired interval is within the tolerance, and says which it could not judge."""

import numpy as np
import pytest

from segprune.experiments.sweep import with_paired_losses
from segprune.report.html import balance_sentence
from segprune.report.tables import balance_point, best_deployments, undecided_rows


def _row(method, budget, dice, latency_ms, loss=None, **extra):
    """A sweep row; `loss` is (point, low, high) in Dice points."""
    row = {"method": method, "budget": budget, "dice": dice, "latency_ms": latency_ms, "speedup": 10.0 / latency_ms,
           "macs_ratio": budget or 1.0, "model_path": f"{method}-{budget}.keras", "num_images": 36,
           "dice_interval": [dice - 0.01, dice + 0.01]}
    if loss is not None:
        row.update(dice_loss=loss[0] / 100, dice_loss_interval=[loss[1] / 100, loss[2] / 100])
    row.update(extra)
    return row


def _rows():
    return [
        _row("dense", None, 0.800, 10.0),
        _row("oneshot-l1", 0.5, 0.795, 6.0, loss=(0.5, 0.2, 0.9)),  # surely within 1 point
        _row("oneshot-l1", 0.25, 0.794, 3.0, loss=(0.6, -0.2, 1.4)),  # point within, interval crosses 1 point
        _row("oneshot-l1", 0.125, 0.700, 2.0, loss=(10.0, 8.0, 12.0)),  # surely beyond
    ]


def test_a_row_whose_loss_interval_crosses_the_tolerance_is_never_the_balance_point():
    rows = _rows()
    assert balance_point(rows, tolerance=1.0) is rows[1]  # not the faster rows[2], though its point loss is 0.6
    assert undecided_rows(rows, rows[1], tolerance=1.0) == [rows[2]]
    assert balance_point(rows, tolerance=1.5) is rows[2]  # its whole interval fits a wider tolerance
    assert balance_point(rows, tolerance=12.0) is rows[3]
    assert balance_point(rows[:1] + rows[2:3], tolerance=1.0) is rows[0]  # the only pruned row crosses: dense


def test_the_sentence_carries_intervals_and_names_the_row_it_cannot_judge():
    rows = _rows()
    sentence, detail = balance_sentence(rows, rows[1], tolerance=1.0)
    assert sentence == ("Half the computation, 1.7x faster on this CPU, Dice 0.795 [0.785, 0.805] instead of 0.800 [0.790, 0.810]: "
                        "0.5 Dice points lost (95% interval 0.2 to 0.9, paired over the same 36 test images).")
    assert "Cannot be told apart from the tolerance: one-shot L1 pruning at a MACs budget of 0.25 (3.00 ms, loss 0.6 points, " \
           "interval -0.2 to 1.4)" in detail
    assert "cannot be told apart from the full model" not in detail  # 0 lies outside [0.2, 0.9]
    rows[1]["dice_loss_interval"] = [-0.001, 0.009]
    assert "cannot be told apart from the full model" in balance_sentence(rows, rows[1], tolerance=1.0)[1]


def test_an_int8_deployment_adds_its_own_loss_to_the_networks_interval():
    rows = _rows()[:2]
    rows[0]["deployments"] = [{"runtime": "onnxruntime", "precision": "fp32", "latency_ms": 10.0, "dice": 0.800}]
    rows[1]["deployments"] = [
        {"runtime": "onnxruntime", "precision": "fp32", "latency_ms": 6.0, "dice": 0.795},
        {"runtime": "onnxruntime", "precision": "int8", "latency_ms": 3.0, "dice": 0.793},  # 0.9 + 0.2 > 1 point
    ]
    chosen = {entry["method"]: entry["deployment"]["precision"] for entry in best_deployments(rows, tolerance=1.0)}
    assert chosen == {"dense": "fp32", "oneshot-l1": "fp32"}
    assert best_deployments(rows, tolerance=1.2)[1]["deployment"]["precision"] == "int8"


def test_sweep_rows_get_their_paired_loss_from_the_per_image_counts():
    dense_counts = np.array([[[9, 4], [1, 0], [0, 1]]] * 3)  # per image: TP, FP, FN of background and foreground
    rows = [
        {"method": "dense", "dice": 8 / 9, "image_counts": dense_counts.tolist()},
        {"method": "same", "dice": 8 / 9, "image_counts": dense_counts.tolist()},
        {"method": "worse", "dice": 6 / 8, "image_counts": [[[9, 3], [2, 0], [0, 2]]] * 3},
        {"method": "classical-otsu", "dice": 0.5},  # no counts: no paired loss
    ]
    result = with_paired_losses(rows)
    assert all("image_counts" not in row for row in result)
    assert result[1]["dice_loss"] == 0.0 and result[1]["dice_loss_interval"] == [0.0, 0.0]
    assert result[2]["dice_loss"] == pytest.approx(8 / 9 - 6 / 8)
    assert result[2]["dice_loss_interval"] == pytest.approx([8 / 9 - 6 / 8] * 2)  # the same loss on every image
    assert "dice_loss" not in result[0] and "dice_loss" not in result[3]
