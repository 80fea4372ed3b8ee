"""The demo end to end on the built-in nuclei tiles, shrunk to one epoch: report, metrics and text table agree."""

import json

import pytest

from segprune.demo import DEMO_SWEEP, run_demo, summary_table
from segprune.experiments import SweepConfig
from segprune.training import DistillConfig


def test_demo_defaults_are_nuclei_with_distilled_fine_tuning():
    assert DEMO_SWEEP.distill is not None
    assert "oneshot-l1" in DEMO_SWEEP.methods and 0.5 in DEMO_SWEEP.budgets
    assert DEMO_SWEEP.finetune_epochs >= 5, "the demo fine-tunes long enough to recover, not for a token epoch or three"


@pytest.mark.slow
def test_demo_writes_a_report_that_opens_with_the_balance_sentence(tmp_path):
    sweep = SweepConfig(methods=("oneshot-l1", "classical-otsu"), budgets=(0.5,), finetune_epochs=1, distill=DistillConfig())
    result = run_demo(tmp_path, epochs=1, sweep=sweep)
    rows = list(result.rows)
    assert [row["method"] for row in rows] == ["dense", "oneshot-l1", "classical-otsu"]
    pruned = rows[1]
    assert pruned["finetune_epochs"] == 1 and pruned["distilled"] and pruned["finetune_seconds"] > 0
    page = result.report_path.read_text()
    sentence_at = page.index('id="balance-sentence"')
    assert sentence_at < page.index("<table") < page.index("<img")
    assert "1 epochs" in page and "distilled" in page
    table = summary_table(rows)
    assert table == (tmp_path / "summary.md").read_text().strip()
    assert table.count("\n") == 1 + len(rows)
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["data"] == "nuclei" and metrics["test"]["dice"] == pytest.approx(rows[0]["dice"])
