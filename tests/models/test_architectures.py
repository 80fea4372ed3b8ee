"""Every built-in architecture builds, accepts any allowed size, follows the output convention and round-trips."""

import keras
import numpy as np
import pytest

from segprune.models import build_model, fcn, mobilenet_unet, output_kind, unet

# (architecture, options): each line is one architecture under test.
CASES = [
    ("unet", {"base_filters": 4, "depth": 2}),
    ("unet", {"base_filters": 4, "depth": 3, "upsampling": "bilinear", "dropout": 0.2}),
    ("unet", {"base_filters": 4, "batch_norm": False}),
    ("fcn", {"base_filters": 4}),
    ("mobilenet-unet", {"alpha": 0.35}),
]


@pytest.mark.parametrize("architecture,options", CASES, ids=lambda value: str(value))
@pytest.mark.parametrize("num_classes", [2, 3])
def test_architecture_contract(architecture, options, num_classes, tmp_path):
    channels = 3 if architecture == "mobilenet-unet" else 1
    model = build_model(architecture, num_classes=num_classes, input_channels=channels, **options)

    assert model.input_shape == (None, None, None, channels)
    for height, width in ((32, 32), (64, 96)):
        output = model.predict(np.random.rand(2, height, width, channels).astype("float32"), verbose=0)
        expected_channels = 1 if num_classes == 2 else num_classes
        assert output.shape == (2, height, width, expected_channels)
        assert np.all((output >= 0) & (output <= 1))
        if num_classes > 2:
            np.testing.assert_allclose(output.sum(axis=-1), 1.0, atol=1e-5)

    kind = output_kind(model)
    assert kind.activation == ("sigmoid" if num_classes == 2 else "softmax")
    assert kind.num_classes == num_classes

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    sample = np.random.rand(1, 32, 32, channels).astype("float32")
    np.testing.assert_allclose(reloaded.predict(sample, verbose=0), model.predict(sample, verbose=0), atol=1e-6)


def test_unet_stage_widths():
    model = unet(num_classes=2, input_channels=1, base_filters=8, depth=3)
    assert model.get_layer("enc0a_conv").filters == 8
    assert model.get_layer("enc2b_conv").filters == 32
    assert model.get_layer("mid_a_conv").filters == 64
    assert isinstance(model.get_layer("dec0_up"), keras.layers.Conv2DTranspose)


def test_mobilenet_unet_keeps_encoder_nested():
    model = mobilenet_unet(num_classes=2, alpha=0.35)
    encoder = model.get_layer("encoder")
    assert isinstance(encoder, keras.Model)
    assert len(encoder.outputs) == 5


def test_fcn_fuses_scores_with_add():
    model = fcn(num_classes=3, input_channels=3, base_filters=4)
    assert isinstance(model.get_layer("fuse_stride16"), keras.layers.Add)
    assert isinstance(model.get_layer("fuse_stride8"), keras.layers.Add)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: unet(num_classes=1), "num_classes"),
        (lambda: unet(upsampling="nearest"), "upsampling"),
        (lambda: unet(depth=0), "depth"),
        (lambda: unet(dropout=1.5), "dropout"),
        (lambda: fcn(base_filters=0), "base_filters"),
        (lambda: mobilenet_unet(encoder_weights="/nonexistent/weights.h5"), "encoder_weights"),
        (lambda: build_model("segformer", 2, 3), "Unknown architecture"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        call()


def test_logits_and_pass_through_layers_are_recognised():
    inputs = keras.Input((None, None, 1))
    logits = keras.layers.Conv2D(3, 1)(inputs)
    assert output_kind(keras.Model(inputs, logits)).activation == "linear"
    probabilities = keras.layers.Softmax()(logits)
    resized = keras.layers.UpSampling2D(2)(probabilities)
    assert output_kind(keras.Model(inputs, resized)).activation == "softmax"


def test_multi_label_sigmoid_is_refused():
    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Conv2D(3, 1, activation="sigmoid")(inputs)
    with pytest.raises(ValueError, match="multi-label"):
        output_kind(keras.Model(inputs, outputs))
