"""Every keras.applications CNN built from supported layers prunes at ratio 0.5 and round-trips.

The coupling does not depend on the input size or the number of classes, so each model is built at a
small input (its documented minimum where it has one) with a 10-class head.
"""

import keras
import numpy as np
import pytest

from segprune import prune_channels, pruning_summary
from segprune.backend._keras_internals import placeholder_initial_values
from tests.graph.harness import built_with_numpy_weights, infer

APPLICATIONS = {
    "ResNet50": 32, "ResNet50V2": 32, "MobileNet": 32, "MobileNetV2": 32, "MobileNetV3Small": 32, "DenseNet121": 32,
    "EfficientNetB0": 32, "EfficientNetV2B0": 32, "Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75,
    "NASNetMobile": 32, "VGG16": 32, "ConvNeXtTiny": 32,
}
# One of each coupling kind in the default suite: residual adds (ResNet50), depthwise inverted residuals
# (MobileNetV2), squeeze-and-excitation gates (EfficientNetB0), grouped convs with LayerNormalization
# (ConvNeXtTiny). The rest repeat these kinds at several minutes' cost and run with `make test-all`.
DEFAULT_SUITE = ("ResNet50", "MobileNetV2", "EfficientNetB0", "ConvNeXtTiny")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [name if name in DEFAULT_SUITE else pytest.param(name, marks=pytest.mark.exhaustive) for name in APPLICATIONS]
)
def test_application_prunes_and_round_trips(name, tmp_path):
    size = APPLICATIONS[name]
    model = built_with_numpy_weights(lambda: getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10))
    pruned = prune_channels(model, ratio=0.5)
    sample = np.random.default_rng(0).random((1, size, size, 3)).astype(np.float32)
    output = infer(pruned, sample)
    assert output.shape == infer(model, sample).shape == (1, 10)
    assert pruned.count_params() < 0.5 * model.count_params()
    summary = pruning_summary(model, pruned, (size, size))
    assert summary.params_before == model.count_params() and summary.params_after == pruned.count_params()
    assert summary.macs_ratio < 0.6
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    with placeholder_initial_values():  # a weight the file fails to restore stays zero and shows below
        reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(infer(reloaded, sample), output, atol=1e-5)


def test_unknown_layer_is_pinned_and_named_in_the_summary():
    class Unknown(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((8, 8, 3))
    x = Unknown(name="mystery")(keras.layers.Conv2D(4, 3, name="conv")(keras.layers.Conv2D(8, 3, name="first")(inputs)))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(x))
    pruned = prune_channels(model, ratio=0.5, round_to=1)
    assert pruned.get_layer("first").filters == 4 and pruned.get_layer("conv").filters == 4  # kept whole: the mystery reads it
    lines = pruning_summary(model, pruned, (8, 8)).pinned_lines()
    assert "mystery: no channel handler for class" in lines[1] and "register_handler" in lines[-1]
