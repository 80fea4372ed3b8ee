"""The sweep's deployment dimension: every network on every runtime, fp32 and int8 (and bf16 on OpenVINO where the CPU
has it), with both speed-ups, the precision that ran and its share of the CPU's peak."""

import pytest

from segprune.data import synthetic_dataset
from segprune.experiments import SweepConfig, run_sweep
from segprune.experiments.deployment import deployed_precisions
from segprune.models import unet
from segprune.report.deployments import deployment_section
from segprune.report.tables import best_deployments
from segprune.runtime.peak import detect_cpu


def test_bf16_deploys_on_openvino_where_the_cpu_runs_it():
    bf16 = ["bf16"] if detect_cpu().supports("bf16") else []
    assert deployed_precisions("openvino") == ["int8", *bf16]
    assert deployed_precisions("onnxruntime") == deployed_precisions("litert") == ["int8"]


def test_every_network_is_deployed_on_every_runtime_and_precision(tmp_path, monkeypatch):
    # bf16 goes through the same loop as int8 (quantize(precision="bf16") is tested in tests/runtime): left out for time
    monkeypatch.setattr("segprune.experiments.deployment.deployed_precisions", lambda runtime: ["int8"])
    data = synthetic_dataset(num_train=4, num_val=2, num_test=2, image_size=32, channels=1, seed=0)
    model = unet(num_classes=data.num_classes, input_channels=data.image_channels, base_filters=16, depth=2)
    config = SweepConfig(
        methods=("oneshot-l1",), budgets=(0.5,), finetune_epochs=0, image_size=32, runtimes=("onnxruntime", "openvino"), int8=True
    )
    rows = run_sweep(model, data, tmp_path, config)
    expected = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")]
    for row in rows:
        settings = sorted((d["runtime"], d["precision"]) for d in row["deployments"])
        assert settings == expected
        for deployment in row["deployments"]:
            assert deployment["latency_ms"] == pytest.approx(deployment["latency_ms"])  # a number, not NaN
            assert 0.0 <= deployment["mask_agreement"] <= 1.0
            assert deployment["executed_precision"].split()[0] == deployment["precision"]  # fp32 ran in fp32, not in bf16
            assert 0.0 < deployment["peak_share"] < 1.0
    dense = rows[0]
    reference = next(d for d in dense["deployments"] if (d["runtime"], d["precision"]) == ("onnxruntime", "fp32"))
    assert reference["speedup_vs_reference"] == 1.0 and reference["speedup_vs_dense_same_runtime"] == 1.0
    for deployment in dense["deployments"]:  # the dense model against itself on its own runtime: exactly 1
        assert deployment["speedup_vs_dense_same_runtime"] == 1.0
        assert deployment["speedup_vs_reference"] == pytest.approx(reference["latency_ms"] / deployment["latency_ms"])
    pruned = rows[1]
    assert pruned["latency_ms"] == next(d["latency_ms"] for d in pruned["deployments"] if d["runtime"] == "onnxruntime" and d["precision"] == "fp32")
    assert pruned["speedup"] == pytest.approx(reference["latency_ms"] / pruned["latency_ms"])

    best = best_deployments(rows, tolerance=100.0)  # every deployment within a 100-point tolerance: the fastest wins
    fastest = min(pruned["deployments"], key=lambda d: d["latency_ms"])
    assert best[1]["deployment"] == fastest
    strict = best_deployments(rows, tolerance=-100.0)  # none can be 1 Dice above dense
    assert all(entry["deployment"] is None for entry in strict)

    section = deployment_section(rows, tolerance=100.0)
    assert section.count("<tr>") + section.count('<tr class="balance">') == 1 + 2 * len(expected)  # the header and one per deployment
    assert section.count('<tr class="balance">') == 2 and section.count("fastest within tolerance") == 2
    assert deployment_section(rows, tolerance=-100.0).count('class="balance"') == 0
    one_setting = [dict(row, deployments=row["deployments"][:1]) for row in rows]
    assert deployment_section(one_setting, tolerance=1.0) == ""


def test_unknown_runtimes_are_refused_up_front():
    with pytest.raises(ValueError, match="Sweep runtimes must be among"):
        SweepConfig(runtimes=("tensorrt",))
