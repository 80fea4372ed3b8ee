"""ONNX export matches Keras; interleaved latency measurement returns figures for every model."""

import keras
import numpy as np
import pytest

from segprune import prune_channels
from segprune.cost import flops
from segprune.models import mobilenet_unet, unet
from segprune.runtime.benchmark import onnx_latency, zipped_size
from segprune.runtime.export import (
    ExportMismatchError,
    export_model,
    export_onnx,
    fit_to_shape,
    onnx_session,
    open_runner,
    parse_input_shape,
)


@pytest.mark.parametrize("build", [lambda: unet(num_classes=3, input_channels=1, base_filters=8),
                                   lambda: unet(num_classes=2, input_channels=1, base_filters=8, upsampling="bilinear"),
                                   lambda: mobilenet_unet(num_classes=2, alpha=0.35)])
def test_pruned_model_exports_to_onnx_within_1e_4(build, tmp_path):
    pruned = prune_channels(build(), ratio=0.5)
    path = tmp_path / "pruned.onnx"
    difference = export_onnx(pruned, path)
    assert difference <= 1e-4
    channels = pruned.input_shape[-1]
    sample = np.random.default_rng(1).random((2, 96, 64, channels)).astype(np.float32)
    session = onnx_session(path)
    actual = session.run(None, {session.get_inputs()[0].name: sample})[0]
    np.testing.assert_allclose(actual, pruned.predict(sample, verbose=0), atol=1e-4)


def test_exact_gelu_exports_as_one_minus_erf(tmp_path):
    # keras.activations.gelu (approximate=False, every ViT MLP) traces to TensorFlow's Erfc, which ONNX has no op for
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Activation("gelu")(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation=keras.activations.gelu)(features))
    path = tmp_path / "gelu.onnx"
    assert export_onnx(model, path) <= 1e-4
    sample = np.random.default_rng(2).normal(size=(1, 8, 8, 3)).astype(np.float32) * 3
    session = onnx_session(path)
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: sample})[0], model.predict(sample, verbose=0), atol=1e-5)


def test_a_fixed_size_the_network_cannot_take_is_refused_with_one_that_fits(tmp_path):
    # 100x140 through three poolings: the U-Net's skip meets 24x34 against 25x35; a raw Keras traceback before
    with pytest.raises(ValueError, match=r"cannot run at input 1x100x140x1 .* Use e.g. 1x128x160x1") as refused:
        export_onnx(unet(base_filters=4), tmp_path / "odd.onnx", input_shape="1x100x140")
    assert "\n" not in str(refused.value) and not list(tmp_path.iterdir())


def test_export_refuses_to_write_beyond_tolerance(tmp_path):
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportMismatchError):
        export_onnx(unet(base_filters=4, depth=1), path, tolerance=-1.0)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_interleaved_latency(tmp_path):
    model = unet(base_filters=8, depth=2)
    paths = [tmp_path / "dense.onnx", tmp_path / "pruned.onnx"]
    export_onnx(model, paths[0])
    export_onnx(prune_channels(model, ratio=0.5), paths[1])
    dense, pruned = onnx_latency(paths, image_size=64, rounds=5, warmup=1)
    assert dense.runs == pruned.runs == 5
    assert (dense.model, pruned.model) == tuple(map(str, paths))  # each figure belongs to its own file
    assert dense.p90_ms >= dense.median_ms and pruned.p90_ms >= pruned.median_ms


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("litert", ".tflite")])
def test_export_formats_match_keras_on_random_and_real_inputs(fmt, suffix, nuclei_path, tmp_path):
    from segprune import load_data

    model = prune_channels(unet(num_classes=2, input_channels=1, base_filters=8), ratio=0.5)
    images = [image for _, image, _ in load_data(nuclei_path).samples("test")][:2]
    path = tmp_path / f"model{suffix}"
    assert export_model(model, path, fmt, samples=images) <= 1e-4
    runner = open_runner(path)
    for image in images:
        np.testing.assert_allclose(runner(image[None]), model.predict(image[None], verbose=0), atol=1e-4)


def _conv_resize_batchnorm():
    """Conv2D -> Resizing -> BatchNormalization with moving statistics far from a batch's own."""
    inputs = keras.Input((None, None, 1))
    features = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    features = keras.layers.Resizing(32, 32)(features)
    batch_norm = keras.layers.BatchNormalization()
    model = keras.Model(inputs, batch_norm(features))
    batch_norm.moving_mean.assign(np.full(4, 0.7, np.float32))
    batch_norm.moving_variance.assign(np.full(4, 3.0, np.float32))
    return model


def test_verification_catches_a_graph_traced_in_training_mode(tmp_path, monkeypatch):
    """Keras 3.15's own ONNX export traces this model with BatchNormalization in training mode."""
    model = _conv_resize_batchnorm()
    model.predict(np.zeros((1, 16, 16, 1), np.float32), verbose=0)
    monkeypatch.setattr(
        "segprune.runtime._tensorflow.write_onnx", lambda model, path, shape: model.export(str(path), format="onnx", verbose=False)
    )
    with pytest.raises(ExportMismatchError, match="differs from Keras"):
        export_model(model, tmp_path / "model.onnx", "onnx", check_size=16)
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("litert", ".tflite")])
def test_export_traces_inference_mode(fmt, suffix, tmp_path):
    model = _conv_resize_batchnorm()
    moving_mean = model.layers[-1].moving_mean.numpy().copy()
    assert export_model(model, tmp_path / f"model{suffix}", fmt, check_size=16) <= 1e-4
    np.testing.assert_array_equal(model.layers[-1].moving_mean.numpy(), moving_mean)


def test_static_export_folds_shape_arithmetic_and_matches_keras(tmp_path):
    import onnx

    model = prune_channels(unet(num_classes=2, input_channels=1, base_filters=8), ratio=0.5)
    dynamic, static = tmp_path / "dynamic.onnx", tmp_path / "static.onnx"
    export_model(model, dynamic)
    assert export_model(model, static, input_shape="1x64x64") <= 1e-4
    runner = open_runner(static)
    assert runner.input_shape == (1, 64, 64, 1)
    sample = np.random.default_rng(3).random((1, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(runner(sample), model.predict(sample, verbose=0), atol=1e-4)
    dynamic_ops = [node.op_type for node in onnx.load(dynamic).graph.node]
    static_ops = [node.op_type for node in onnx.load(static).graph.node]
    assert "Shape" in dynamic_ops and "Shape" not in static_ops and len(static_ops) < len(dynamic_ops)
    assert static_ops.count("Conv") == dynamic_ops.count("Conv")


@pytest.mark.parametrize("input_shape", [None, (1, 32, 48)])
def test_a_model_holding_a_constant_tensor_exports_with_its_image_as_the_only_input(input_shape, tmp_path):
    # keras.io's DeepLabV3+ puts resnet50.preprocess_input on its input: the mean pixel is an eager tensor in the
    # graph, captured by the traced function, which tf2onnx's from_function listed as a second, unfed ONNX input.
    inputs = keras.Input((None, None, 3))
    x = keras.applications.resnet50.preprocess_input(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(keras.layers.Conv2D(4, 1)(x)))
    path = tmp_path / "model.onnx"
    assert export_model(model, path, input_shape=input_shape, check_size=32) <= 1e-4
    assert [tensor.name for tensor in onnx_session(path).get_inputs()] == ["input"]


@pytest.mark.parametrize("input_shape", [None, (1, 64, 48)])
def test_openvino_round_trip_equals_keras(input_shape, nuclei_path, tmp_path):
    from segprune import load_data

    model = prune_channels(unet(num_classes=2, input_channels=1, base_filters=8), ratio=0.5)
    images = [image for _, image, _ in load_data(nuclei_path).samples("test")][:2]
    path = tmp_path / "model.xml"
    assert export_model(model, path, "openvino", samples=images, input_shape=input_shape) <= 1e-4
    assert 'element_type="f16"' not in path.read_text(), "weights are kept in fp32, not compressed to fp16"
    runner = open_runner(path)
    for image in images:
        batch = fit_to_shape(image, 64, 48)[None] if input_shape else image[None]
        np.testing.assert_allclose(runner(batch), model.predict(batch, verbose=0), atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]


def test_openvino_export_refused_leaves_no_files(tmp_path):
    with pytest.raises(ExportMismatchError):
        export_model(unet(base_filters=4, depth=1), tmp_path / "model.xml", "openvino", tolerance=-1.0)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match=".xml"):
        export_model(unet(base_filters=4, depth=1), tmp_path / "model.onnx", "openvino")


def test_input_shapes_are_checked():
    assert parse_input_shape("1x256x256") == (1, 256, 256) and parse_input_shape("64x32") == (64, 32)
    for text in ["256", "1x0x256", "axb", "1x2x3x4x5"]:
        with pytest.raises(ValueError, match="HxW"):
            parse_input_shape(text)
    with pytest.raises(ValueError, match="expected \\(batch, height, width, 1\\)"):
        export_model(unet(base_filters=4, depth=1, input_channels=1), "unused.onnx", input_shape=(1, 32, 32, 3))


def test_fit_to_shape_crops_and_pads():
    image = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    assert fit_to_shape(image, 2, 2)[..., 0].tolist() == [[0, 1], [4, 5]]
    padded = fit_to_shape(image, 5, 4)
    assert padded.shape == (5, 4, 1) and padded[3, :, 0].tolist() == image[2, :, 0].tolist()


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="litert"):
        export_model(unet(base_filters=4, depth=1), tmp_path / "m.pt", format="torchscript")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", pytest.param("litert", marks=pytest.mark.exhaustive), "keras"])
def test_benchmark_cli_json_for_every_runtime(runtime, tmp_path, capsys):
    import json

    from segprune.cli import main

    dense = unet(base_filters=8, depth=2)
    paths = [tmp_path / "dense.keras", tmp_path / "pruned.keras"]
    dense.save(paths[0])
    prune_channels(dense, ratio=0.5).save(paths[1])
    code = main(["benchmark", *map(str, paths), "--runtime", runtime, "--image-size", "64", "--rounds", "3", "--json"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [row["model"] for row in rows] == [str(p) for p in paths]
    for row, path in zip(rows, paths):
        model = keras.saving.load_model(path)
        assert row["runtime"] == runtime and row["p90_ms"] >= row["latency_ms"]
        assert row["macs"] == flops(model, (64, 64)).macs and row["params"] == model.count_params()
        assert row["zipped_bytes"] == zipped_size(path) and row["cpu_ms_per_image"] >= 0
        assert row["gmacs_per_second"] == pytest.approx(row["macs"] / row["latency_ms"] / 1e6)
        assert row["static_shape"] is (runtime != "keras")
    assert rows[1]["macs"] < rows[0]["macs"]


def test_export_cli_fixed_shape_openvino(tmp_path, capsys):
    from segprune.cli import main

    source = tmp_path / "model.keras"
    unet(base_filters=4, depth=1).save(source)
    out = tmp_path / "model.xml"
    assert main(["export", str(source), "--format", "openvino", "--input-shape", "1x32x32", "--out", str(out)]) == 0
    assert "input fixed to 1x32x32" in capsys.readouterr().out
    runner, sample = open_runner(out), np.random.default_rng(0).random((1, 32, 32, 1)).astype(np.float32)
    assert runner.input_shape == (1, 32, 32, 1)
    np.testing.assert_allclose(runner(sample), keras.saving.load_model(source).predict(sample, verbose=0), atol=1e-4)


def test_export_cli_never_overwrites_its_input(tmp_path, capsys):
    from segprune.cli import main

    source = tmp_path / "model.keras"
    unet(base_filters=4, depth=1).save(source)
    assert main(["export", str(source), "--format", "onnx", "--out", str(source)]) == 2
    assert main(["export", str(source), "--format", "onnx", "--out", str(tmp_path / "model.onnx")]) == 0
    assert "largest difference" in capsys.readouterr().out


def test_a_file_with_outputs_of_another_shape_is_written_once_more_then_refused(tmp_path, monkeypatch):
    """tf2onnx can skip a failing optimiser pass and leave an output with an extra leading dimension."""
    import segprune.runtime.export as export

    model = unet(num_classes=2, input_channels=1, base_filters=4, depth=1)
    inputs = keras.Input((32, 32, 1))
    wrong = keras.Model(inputs, keras.layers.Reshape((1, 32, 32, model.output_shape[-1]))(model(inputs)))
    writer, calls = export.write_model, []

    def flaky(target, path, format, shape):
        calls.append(target)
        writer(wrong if len(calls) == 1 else target, path, format, shape)

    monkeypatch.setattr(export, "write_model", flaky)
    assert export.export_model(model, tmp_path / "model.onnx", "onnx", input_shape=(1, 32, 32)) <= 1e-4
    assert len(calls) == 2 and (tmp_path / "model.onnx").exists()

    monkeypatch.setattr(export, "write_model", lambda target, path, format, shape: writer(wrong, path, format, shape))
    with pytest.raises(ExportMismatchError, match="outputs of shapes"):
        export.export_model(model, tmp_path / "again.onnx", "onnx", input_shape=(1, 32, 32))
    assert not (tmp_path / "again.onnx").exists()
