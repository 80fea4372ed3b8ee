"""Latency tables and model timing for the runtime and precision a model ships on."""

import json

import onnx
import pytest

from segprune.graph.groups import build_channel_graph
from segprune.models import unet
from segprune.runtime import latency
from segprune.runtime.benchmark import Latency
from segprune.runtime.export import OnnxRunner, OpenVINORunner
from segprune.runtime.latency import LatencyTable, time_models
from segprune.runtime.peak import detect_cpu


@pytest.fixture
def opened(monkeypatch):
    """Records, for every file timed, the runner class, whether the graph is quantized, and the precision that ran."""
    records = []
    original = latency.open_runner

    def recording(path, threads, runtime=None, precision=None):
        runner = original(path, threads, runtime, precision)
        quantized = str(path).endswith(".onnx") and any(n.op_type == "QuantizeLinear" for n in onnx.load(path).graph.node)
        records.append((type(runner), quantized, runner.executed_precision))
        return runner

    monkeypatch.setattr(latency, "open_runner", recording)
    return records


@pytest.mark.parametrize("runtime,precision,runner", [("openvino", "fp32", OpenVINORunner), ("openvino", "int8", OpenVINORunner),
                                                      ("onnxruntime", "int8", OnnxRunner), ("openvino", "bf16", OpenVINORunner)])
def test_table_times_layers_on_its_runtime_and_precision(runtime, precision, runner, opened, tmp_path):
    if precision == "bf16" and not detect_cpu().supports("bf16"):
        pytest.skip("the CPU has no AVX512_BF16 or AMX")
    graph = build_channel_graph(unet(base_filters=4, depth=1), input_shape=(32, 32))
    table = LatencyTable(threads=1, rounds=1, path=tmp_path / "table.json", runtime=runtime, precision=precision)
    table.layers_ms(graph, [])
    assert len(opened) == len(table.entries) > 0
    assert {kind for kind, _, _ in opened} == {runner}
    assert {quantized for _, quantized, _ in opened} == {precision == "int8"}
    executed = {executed.split()[0] for _, _, executed in opened}
    if precision == "int8":  # OpenVINO runs the QDQ transposed convolution in fp32, and names it so
        assert "int8" in executed and executed <= {"int8", "fp32"}
    else:
        assert executed == {precision}  # fp32 timed in fp32, not OpenVINO's bf16 default
    saved = json.loads((tmp_path / "table.json").read_text())
    assert (saved["runtime"], saved["precision"]) == (runtime, precision)
    assert sorted(saved["executed"].values()) == sorted(executed for _, _, executed in opened)  # each entry says what ran


def test_a_saved_table_of_another_runtime_is_refused(tmp_path):
    path = tmp_path / "table.json"
    LatencyTable(threads=1, path=path, runtime="openvino").save()
    with pytest.raises(ValueError, match="timed on openvino at fp32, not onnxruntime at fp32"):
        LatencyTable(threads=1, path=path)
    with pytest.raises(ValueError, match="precision 'int4'"):
        LatencyTable(precision="int4")
    with pytest.raises(ValueError, match="bf16 latency is tabled on openvino"):
        LatencyTable(precision="bf16")


def test_time_models_exports_for_the_runtime(monkeypatch):
    timed = []

    def recording_latency(paths, runtime, image_size, threads, precision=None):
        timed.append(([path.suffix for path in paths], runtime, image_size, precision))
        return [Latency(str(path), 1.0, 1.0, 1) for path in paths]

    monkeypatch.setattr(latency, "file_latency", recording_latency)
    models = [unet(base_filters=4, depth=1), unet(base_filters=2, depth=1)]
    assert time_models(models, 32, 1, runtime="openvino", precision="int8") == [1.0, 1.0]
    assert time_models(models, 32, 1) == [1.0, 1.0]
    monkeypatch.setattr(latency, "export_model", lambda *args, **kwargs: None)  # the bf16 branch exports as fp32 does
    assert time_models(models, 32, 1, runtime="openvino", precision="bf16") == [1.0, 1.0]
    assert timed == [([".xml", ".xml"], "openvino", (32, 32), None), ([".onnx", ".onnx"], "onnxruntime", (32, 32), None), ([".xml", ".xml"], "openvino", (32, 32), "bf16")]
