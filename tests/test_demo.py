"""The demo end to end on the built-in nuclei tiles, shrunk to one epoch: report, metrics and text table agree."""

import json

import pytest

from segprune._io import save_model
from segprune.data import BatchConfig
from segprune.demo import DEMO_INSTANCES, DEMO_SWEEP, DemoDeployment, run_demo, summary_table
from segprune.experiments import InstanceSweepConfig, SweepConfig
from segprune.models import unet
from segprune.models.loading import ModelFileError
from segprune.models.mask_rcnn import mask_rcnn, save_mask_rcnn
from segprune.training import DistillConfig, TrainConfig
from tests.fixtures import TINY_MASK_RCNN


def test_demo_defaults_are_nuclei_with_distilled_fine_tuning():
    assert DEMO_SWEEP.distill is not None
    assert "oneshot-l1" in DEMO_SWEEP.methods and 0.5 in DEMO_SWEEP.budgets
    assert DEMO_SWEEP.finetune_epochs >= 5, "the demo fine-tunes long enough to recover, not for a token epoch or three"
    assert DEMO_INSTANCES.criteria == ("l1",) and DEMO_INSTANCES.budgets == (0.5,) and DEMO_INSTANCES.finetune_epochs >= 20


def test_a_wrong_mask_rcnn_file_fails_before_any_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="No Mask R-CNN file"):
        run_demo(tmp_path / "demo", mask_rcnn=tmp_path / "missing.keras")
    not_a_detector = save_model(unet(num_classes=2, input_channels=1, base_filters=4, depth=1), tmp_path / "unet.keras")
    with pytest.raises(ModelFileError, match="not a Mask R-CNN"):
        run_demo(tmp_path / "demo", mask_rcnn=not_a_detector)
    assert not (tmp_path / "demo" / "unet.keras").exists()


@pytest.mark.slow
def test_demo_writes_a_report_that_opens_with_the_balance_sentence(tmp_path, monkeypatch):
    # The demo's own U-Net made smaller (depth 2 instead of 3): every step of the demo runs, on less work.
    monkeypatch.setattr("segprune.demo.unet", lambda **shape: unet(**shape, depth=2))
    sweep = SweepConfig(methods=("oneshot-l1", "classical-otsu"), budgets=(0.5,), finetune_epochs=1, distill=DistillConfig(),
                        train=TrainConfig(batches=BatchConfig(batch_size=4, image_size=64)))  # the fine-tune's cost, not its quality
    detector = save_mask_rcnn(mask_rcnn(detection_min_score=0.0, max_detections=20, **TINY_MASK_RCNN), tmp_path / "mask_rcnn.keras")
    instances = InstanceSweepConfig(finetune_epochs=1, round_to=1)
    deployment = DemoDeployment(runtime="onnxruntime", rounds=2)  # the row optimize produces, timed briefly
    result = run_demo(tmp_path, epochs=1, sweep=sweep, mask_rcnn=detector, instances=instances, deployment=deployment)
    rows = list(result.rows)
    assert [row["method"] for row in rows] == ["dense", "oneshot-l1", "classical-otsu"]
    pruned = rows[1]
    assert pruned["finetune_epochs"] == 1 and pruned["distilled"] and pruned["finetune_seconds"] > 0
    page = result.report_path.read_text()
    sentence_at = page.index('id="balance-sentence"')
    assert sentence_at < page.index("<table") < page.index("<img")
    assert "1 epochs" in page and "distilled" in page
    instance_rows = list(result.instance_rows)
    assert [(row["method"], row["budget"]) for row in instance_rows] == [
        ("mask-rcnn", None), ("mask-rcnn-l1", 0.5), ("dense+watershed", None), ("oneshot-l1+watershed", 0.5), ("classical-watershed", None)
    ]
    assert result.instance_notes == () and 'id="instances"' in page and "Objects outlined on test tiles" in page
    assert page.count("data:image/png;base64,") == 4
    table = summary_table(rows)
    assert (tmp_path / "summary.md").read_text().startswith(table + "\n\n| instance method")
    assert table.count("\n") == 1 + len(rows)
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["data"] == "nuclei" and metrics["test"]["dice"] == pytest.approx(rows[0]["dice"])
    assert [row["ap50"] for row in metrics["instances"]] == [row["ap50"] for row in instance_rows]
    # The deployment row: optimize deployed the sweep's own pruned model (nothing fine-tuned again) and the report shows its card.
    card = result.deployment
    assert metrics["deployment"]["chosen"] == card["chosen"] and card["runtime"] == "onnxruntime"
    assert (tmp_path / "deploy" / "model_card.md").exists() and (tmp_path / "deploy" / card["chosen"]["file"]).exists()
    pruned_step = next(step for step in card["tried"] if step["step"] != "dense")
    assert pruned_step["budget"] == 0.5 and pruned_step["macs"] == pytest.approx(pruned["macs_ratio"] * card["dense_macs"], rel=0.02)
    assert 'id="deployed"' in page and card["chosen"]["file"] in page and page.index('id="deployed"') < page.index("<img")
