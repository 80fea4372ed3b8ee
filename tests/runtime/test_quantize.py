"""int8 quantization: written when it keeps the masks, refused with the figures when it does not."""

import json

import keras
import numpy as np
import pytest

from segprune.inference import tiles_of
from segprune.runtime.export import open_runner
from segprune.runtime.peak import detect_cpu
from segprune.runtime.quantize import QuantizationRefused, calibration_batches, input_convolutions, quantize


def threshold_model(outlier_gain: float) -> keras.Model:
    """Foreground where the image is brighter than 0.14 (nuclei are), read from the second of two 1x1-conv channels.

    The first channel is `outlier_gain` times the image: with a large gain, that channel sets the per-tensor
    activation range of int8 quantization and the second channel (in [0, 1]) rounds to zero.
    """
    inputs = keras.Input((None, None, 1))
    features = keras.layers.Conv2D(2, 1)(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(features)
    model = keras.Model(inputs, outputs)
    model.layers[1].set_weights([np.array([outlier_gain, 1.0], np.float32).reshape(1, 1, 1, 2), np.zeros(2, np.float32)])
    model.layers[2].set_weights([np.array([0.0, 50.0], np.float32).reshape(1, 1, 2, 1), np.array([-7.0], np.float32)])
    return model


def test_quantized_model_is_written_when_it_keeps_the_masks(nuclei_path, tmp_path):
    out = tmp_path / "int8.onnx"
    result = quantize(threshold_model(outlier_gain=1.0), nuclei_path, "onnxruntime", out=out, input_shape=(1, 64, 64))
    assert result.mask_agreement > 0.99 and abs(result.dice_drop_points) <= 1.0
    assert result.dice_fp32 > 0.5 and result.calibration_tiles == 40 and result.test_images == 4
    assert result.input_shape == (1, 64, 64, 1)
    assert (result.precision, result.executed_precision) == ("int8", "int8 (fp32 fallback)")  # the first convolution stays fp32
    import onnx

    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert open_runner(out).input_shape == (1, 64, 64, 1)


@pytest.mark.parametrize("runtime,suffix", [("onnxruntime", ".onnx"), ("openvino", ".xml")])
def test_quantization_refused_beyond_tolerance(runtime, suffix, nuclei_path, tmp_path):
    out = tmp_path / f"int8{suffix}"
    with pytest.raises(QuantizationRefused, match="Dice points.*more than the tolerance of 1"):
        quantize(threshold_model(outlier_gain=1000.0), nuclei_path, runtime, out=out, input_shape=(1, 64, 64), tolerance=1.0)
    assert not list(tmp_path.iterdir())


def _float_weighted_convs(path) -> set[str]:
    """Names of the ONNX Conv nodes whose weight is a plain initializer (not dequantized from int8)."""
    import onnx

    graph = onnx.load(path).graph
    initializers = {initializer.name for initializer in graph.initializer}
    return {node.name for node in graph.node if node.op_type == "Conv" and node.input[1] in initializers}


@pytest.mark.parametrize("keep", [True, False])
def test_the_convolution_reading_the_image_stays_fp32_unless_asked(keep, nuclei_path, tmp_path):
    out = tmp_path / "int8.onnx"
    result = quantize(threshold_model(1.0), nuclei_path, "onnxruntime", out=out, input_shape=(1, 64, 64), float_input_convs=keep)
    kept = _float_weighted_convs(out)
    assert len(kept) == (1 if keep else 0)
    assert bool(result.notes) == keep and all(name in result.notes[0] for name in kept)


def test_openvino_keeps_the_convolution_reading_the_image(nuclei_path, tmp_path):
    import openvino

    out = tmp_path / "int8.xml"
    result = quantize(threshold_model(1.0), nuclei_path, "openvino", out=out, input_shape=(1, 64, 64))
    ops = openvino.Core().read_model(str(out)).get_ordered_ops()
    convolutions = [op for op in ops if op.get_type_name() == "Convolution"]
    quantized = [
        op for op in convolutions
        if op.input(0).get_source_output().get_node().get_type_name() == "FakeQuantize"
    ]
    assert len(convolutions) == 2 and len(quantized) == 1 and quantized[0] is not convolutions[0]
    assert convolutions[0].get_friendly_name() in result.notes[0]
    assert result.executed_precision == "int8 (fp32 fallback)"


def test_input_convolutions_are_those_no_convolution_feeds():
    nodes = [
        ("scale", "Mul", ["image", "k"], ["scaled"]),
        ("a", "Conv", ["scaled", "w1"], ["a_out"]),
        ("b", "Conv", ["image", "w2"], ["b_out"]),  # a second branch on the image
        ("relu", "Relu", ["a_out"], ["r"]),
        ("c", "Conv", ["r", "w3"], ["c_out"]),
        ("add", "Add", ["c_out", "b_out"], ["s"]),
        ("up", "ConvTranspose", ["s", "w4"], ["out"]),
    ]
    assert input_convolutions(nodes) == ["a", "b"]
    assert input_convolutions([("relu", "Relu", ["image"], ["r"])]) == []


def test_litert_full_integer(nuclei_path, tmp_path):
    out = tmp_path / "int8.tflite"
    result = quantize(threshold_model(outlier_gain=1.0), nuclei_path, "litert", out=out, input_shape=(1, 64, 64))
    assert result.mask_agreement > 0.99
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    conv_types = {detail["dtype"] for detail in interpreter.get_tensor_details() if "conv" in detail["name"].lower()}
    assert np.int8 in conv_types and np.float32 not in conv_types - {np.int32}


def test_bad_arguments(nuclei_path, tmp_path):
    with pytest.raises(ValueError, match="choose one of"):
        quantize(threshold_model(1.0), nuclei_path, "tensorrt")
    with pytest.raises(ValueError, match="No calibration batch"):
        quantize(threshold_model(1.0), nuclei_path, input_shape=(8, 64, 64), calibration_tiles=4)
    with pytest.raises(ValueError, match=r"\.xml file"):
        quantize(threshold_model(1.0), nuclei_path, "openvino", out=tmp_path / "int8.onnx")
    with pytest.raises(ValueError, match=r"bf16 deploys on \['openvino'\]; got runtime 'onnxruntime'"):
        quantize(threshold_model(1.0), nuclei_path, "onnxruntime", precision="bf16")


def test_tiles_cover_the_image():
    image = np.arange(100 * 70, dtype=np.float32).reshape(100, 70, 1)
    tiles = list(tiles_of(image, 32, 32))
    assert [position for _, position in tiles][:3] == [(0, 0), (0, 32), (0, 38)]
    assert len(tiles) == 4 * 3 and all(tile.shape == (32, 32, 1) for tile, _ in tiles)
    small = list(tiles_of(image[:10, :10], 32, 32))
    assert len(small) == 1 and small[0][0].shape == (32, 32, 1)
    batches = calibration_batches([image], (2, 32, 32, 1), limit=5)
    assert [batch.shape for batch in batches] == [(2, 32, 32, 1), (2, 32, 32, 1)]


def _quantize_command(arguments):
    """`segprune quantize ARGS` through the command's own parser (as segprune.cli.main runs it)."""
    import argparse

    from segprune.cli import quantize as command

    parser = argparse.ArgumentParser()
    command.configure(parser)
    return command.run(parser.parse_args(arguments))


def test_quantize_command_writes_and_reports(nuclei_path, tmp_path, capsys):
    source, out = tmp_path / "model.keras", tmp_path / "int8.xml"
    threshold_model(outlier_gain=1.0).save(source)
    code = _quantize_command([str(source), "--data", str(nuclei_path), "--runtime", "openvino", "--input-shape", "1x64x64", "--out", str(out)])
    assert code == 0 and open_runner(out).input_shape == (1, 64, 64, 1)
    printed = capsys.readouterr().out
    assert "masks agree with fp32 on" in printed and "input 1x64x64x1" in printed


@pytest.mark.skipif(not detect_cpu().supports("bf16"), reason="the CPU has no AVX512_BF16 or AMX")
def test_bf16_is_a_deploy_precision_checked_like_int8(nuclei_path, tmp_path, capsys):
    source, out = tmp_path / "model.keras", tmp_path / "bf16.xml"
    threshold_model(outlier_gain=1.0).save(source)
    arguments = [str(source), "--data", str(nuclei_path), "--runtime", "openvino", "--precision", "bf16", "--input-shape", "1x64x64"]
    assert _quantize_command([*arguments, "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["precision"], result["executed_precision"], result["calibration_tiles"]) == ("bf16", "bf16", 0)
    assert result["mask_agreement"] > 0.99 and result["test_images"] == 4
    assert open_runner(out).executed_precision == "bf16"  # the file itself asks OpenVINO for bf16


def test_quantize_command_refusal_is_a_user_error(nuclei_path, tmp_path):
    from segprune.cli._common import user_errors

    source = tmp_path / "model.keras"
    threshold_model(outlier_gain=1000.0).save(source)
    with pytest.raises(QuantizationRefused):
        _quantize_command([str(source), "--data", str(nuclei_path), "--input-shape", "1x64x64", "--out", str(tmp_path / "int8.onnx")])
    assert QuantizationRefused in user_errors()
