"""Runners name the precision that executed: OpenVINO's compiled INFERENCE_PRECISION_HINT, int8 with its fallback."""

import numpy as np
import pytest

from segprune.runtime.export import open_runner, set_openvino_precision
from segprune.runtime.peak import detect_cpu

needs_bf16 = pytest.mark.skipif(not detect_cpu().supports("bf16"), reason="the CPU has no AVX512_BF16 or AMX: OpenVINO compiles bf16 as fp32")


def openvino_file(folder, quantized=False, recorded=None):
    """A convolution and a matrix product (the first int8 when `quantized`), saved as an IR."""
    import openvino
    import openvino.opset13 as ops

    image = ops.parameter([1, 4, 8, 8], np.float32)
    node = image
    if quantized:
        low, high = ops.constant(np.float32(0.0)), ops.constant(np.float32(2.55))
        node = ops.fake_quantize(image, low, high, low, high, 256)
    kernel = np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype(np.float32)
    if quantized:
        weight_low, weight_high = ops.constant(np.float32(-1.28)), ops.constant(np.float32(1.27))
        kernel = ops.fake_quantize(ops.constant(kernel), weight_low, weight_high, weight_low, weight_high, 255)
    convolved = ops.relu(ops.convolution(node, kernel, [1, 1], [1, 1], [1, 1], [1, 1]))
    flat = ops.reshape(convolved, ops.constant(np.array([8, 64], np.int64)), False)
    product = ops.matmul(flat, ops.constant(np.ones((64, 16), np.float32)), False, False)
    model = openvino.Model([product], [image])
    if recorded:
        set_openvino_precision(model, recorded)
    path = folder / "model.xml"
    openvino.save_model(model, str(path), compress_to_fp16=False)
    return path


def test_fp32_asked_means_fp32_ran(tmp_path):
    path = openvino_file(tmp_path)
    assert open_runner(path, threads=1).executed_precision == "fp32"  # OpenVINO alone would pick bf16 on a bf16 CPU
    assert open_runner(path, threads=1, precision="fp32").executed_precision == "fp32"


@needs_bf16
def test_bf16_asked_or_recorded_in_the_file_runs_bf16(tmp_path):
    assert open_runner(openvino_file(tmp_path), threads=1, precision="bf16").executed_precision == "bf16"
    recorded = openvino_file(tmp_path, recorded="bf16")
    assert open_runner(recorded, threads=1).executed_precision == "bf16"
    assert open_runner(recorded, threads=1, precision="fp32").executed_precision == "fp32"  # asked beats recorded


def test_int8_names_its_float_fallback(tmp_path):
    path = openvino_file(tmp_path, quantized=True)
    runner = open_runner(path, threads=1)
    assert runner.executed_precision == "int8 (fp32 fallback)"  # the convolution int8, the matrix product fp32
    assert np.isfinite(runner(np.random.default_rng(0).random((1, 4, 8, 8), dtype=np.float32))).all()
    if detect_cpu().supports("bf16"):
        assert open_runner(path, threads=1, precision="bf16").executed_precision == "int8 (bf16 fallback)"


def test_onnxruntime_names_qdq_graphs_int8_and_refuses_bf16(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def save(nodes, initializers, name):
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(value, key) for key, value in initializers.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.save(model, str(tmp_path / name))
        return tmp_path / name

    weight = np.ones((8, 8), np.float32)
    fp32 = save([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": weight}, "fp32.onnx")
    scales = {"s": np.array(0.1, np.float32), "z": np.array(0, np.uint8), "ws": np.array(0.1, np.float32), "wz": np.array(0, np.int8)}
    qdq = save(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
         helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]), helper.make_node("MatMul", ["d", "wd"], ["m"]),
         helper.make_node("MatMul", ["m", "w"], ["y"])],
        {**scales, "wq": np.ones((8, 8), np.int8), "w": weight}, "qdq.onnx",
    )
    assert open_runner(fp32).executed_precision == "fp32"
    runner = open_runner(qdq)
    qdq.unlink()  # benchmarks read it after their temporary files are gone
    assert runner.executed_precision == "int8 (fp32 fallback)"
    with pytest.raises(ValueError, match="bf16 runs on OpenVINO only"):
        open_runner(fp32, precision="bf16")
