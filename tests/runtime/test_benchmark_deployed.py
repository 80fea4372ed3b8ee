"""`segprune benchmark` times deployed files (ONNX, OpenVINO IR, int8 included) beside Keras files, and OpenVINO's
throughput mode."""

import json

import numpy as np
import openvino
import pytest

from segprune.cli import main
from segprune.cost import flops
from segprune.models import unet
from segprune.runtime.benchmark import benchmark_models, graph_macs
from segprune.runtime.export import export_model, onnx_to_openvino
from segprune.runtime.quantize import quantize_onnx


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """dense.keras, its OpenVINO IR fixed at 1x32x32 and its int8 ONNX (dynamic shape), as segprune writes them."""
    folder = tmp_path_factory.mktemp("shipped")
    model = unet(base_filters=4, depth=1)
    model.save(folder / "dense.keras")
    export_model(model, folder / "model.onnx", "onnx")
    onnx_to_openvino(folder / "model.onnx", folder / "dynamic.xml")
    fixed = openvino.Core().read_model(str(folder / "dynamic.xml"))
    fixed.reshape([1, 32, 32, 1])  # a deployed IR with a fixed input shape, as `segprune export --input-shape` writes one
    openvino.save_model(fixed, str(folder / "model.xml"), compress_to_fp16=False)
    calibration = [np.random.default_rng(seed).random((1, 32, 32, 1), dtype=np.float32) for seed in range(2)]
    quantize_onnx(folder / "model.onnx", folder / "model_int8.onnx", calibration)
    return folder, flops(model, (32, 32)).macs, model.count_params()


def test_benchmark_times_keras_openvino_and_int8_onnx_side_by_side(shipped, capsys):
    folder, macs, params = shipped
    files = [str(folder / name) for name in ("dense.keras", "model.xml", "model_int8.onnx")]
    assert main(["benchmark", *files, "--image-size", "32", "--rounds", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["model"] for row in rows] == files
    assert [row["runtime"] for row in rows] == ["onnxruntime", "openvino", "onnxruntime"]  # each file on its own runtime
    assert [row["precision"] for row in rows] == ["fp32", "fp32", "int8 (fp32 fallback)"]
    assert [row["macs"] for row in rows] == [macs, macs, macs]  # the graphs' count equals the Keras model's
    assert [row["params"] for row in rows] == [params, None, None]
    assert [(row["batch"], row["image_size"], row["static_shape"]) for row in rows] == [(1, "32x32", True), (1, "32x32", True), (1, "32x32", False)]
    assert all(row["images_per_second"] == pytest.approx(1000.0 / row["latency_ms"]) for row in rows)
    assert rows[1]["file_bytes"] == (folder / "model.xml").stat().st_size + (folder / "model.bin").stat().st_size
    assert rows[1]["zipped_bytes"] > (folder / "model.bin").stat().st_size // 2  # random float weights barely compress: the .bin is in


def test_benchmark_table_names_each_rows_runtime_and_precision(shipped, capsys):
    folder, _, _ = shipped
    files = [str(folder / name) for name in ("dense.keras", "model.xml", "model_int8.onnx")]
    assert main(["benchmark", *files, "--runtime", "keras", "--image-size", "32", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "keras" in next(line for line in lines if "dense.keras" in line)
    assert "openvino" in next(line for line in lines if "model.xml" in line)
    assert "int8 (fp32" in next(line for line in lines if "model_int8.onnx" in line)


def test_graph_macs_unknown_rather_than_wrong(shipped, tmp_path):
    folder, macs, _ = shipped
    assert graph_macs(folder / "model_int8.onnx", (2, 32, 32, 1)) == 2 * macs
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    assert graph_macs(tmp_path / "broken.onnx", (1, 32, 32, 1)) is None
    assert graph_macs(folder / "dense.keras", (1, 32, 32, 1)) is None


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.pt", b"x", r"Cannot benchmark '.*model.pt': its kind \(.pt\) is not one timed here; expected .keras or .h5"),
        ("lonely.xml", b"<net/>", r"Cannot benchmark '.*lonely.xml': .*lonely.bin not found; expected"),
        ("broken.onnx", b"not a graph", r"Cannot read '.*broken.onnx' with onnxruntime: .*; expected .keras or .h5"),
    ],
)
def test_unsupported_or_unreadable_files_are_refused_in_one_line(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_bytes(content)
    assert main(["benchmark", str(tmp_path / name), "--rounds", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert __import__("re").search(message, error), error


def test_openvino_throughput_mode_counts_every_request_in_flight(shipped):
    folder, _, _ = shipped
    openvino, onnx = benchmark_models([folder / "model.xml", folder / "model_int8.onnx"], image_size=32, batch=2, rounds=2, mode="throughput")
    assert openvino.mode == "throughput" and openvino.requests >= 1 and openvino.batch == 1  # the IR fixes batch 1
    assert openvino.images_per_second == pytest.approx(1000.0 * openvino.requests / openvino.latency_ms)
    assert "openvino throughput mode" in openvino.notes[0] and f"{openvino.requests} requests in flight" in openvino.notes[0]
    assert onnx.requests == 1 and onnx.batch == 2 and onnx.images_per_second == pytest.approx(2000.0 / onnx.latency_ms)
    assert onnx.notes == ("onnxruntime has no throughput mode (no streams): it runs one request at a time, as in latency mode",)
    with pytest.raises(ValueError, match="Unknown mode 'fast'; choose one of \\['latency', 'throughput'\\]"):
        benchmark_models([folder / "model.xml"], mode="fast")
