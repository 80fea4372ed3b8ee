"""Exact equivalence of structural pruning on real architectures (the heart of segprune)."""

import keras
import numpy as np
import pytest

from segprune.backend._keras_internals import placeholder_initial_values
from segprune.cost import flops
from segprune.models import fcn, mobilenet_unet, unet
from tests.graph.harness import assert_prunes_exactly, built_with_numpy_weights, infer

ARCHITECTURES = {
    "unet-transpose": (lambda: unet(num_classes=3, input_channels=1, base_filters=8), (64, 64, 1)),
    "unet-bilinear": (lambda: unet(num_classes=2, input_channels=3, base_filters=8, upsampling="bilinear"), (64, 64, 3)),
    "fcn8s": (lambda: fcn(num_classes=3, input_channels=1, base_filters=8), (64, 64, 1)),
    "mobilenet-unet": (lambda: mobilenet_unet(num_classes=2, alpha=0.35), (64, 64, 3)),
    # the coupling does not depend on the input size or the head: small inputs, 10 classes
    "resnet50": (lambda: keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10), (64, 64, 3)),
    "mobilenetv2": (lambda: keras.applications.MobileNetV2(weights=None, alpha=0.5, input_shape=(64, 64, 3), classes=10), (64, 64, 3)),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.exhaustive)])  # other channels: make test-all
def test_pruned_equals_zeroed_original(name, seed, tmp_path):
    build, input_shape = ARCHITECTURES[name]
    model = built_with_numpy_weights(build, seed)
    pruned = assert_prunes_exactly(model, input_shape, seed=seed)
    assert flops(pruned, input_shape[:2]).macs < flops(model, input_shape[:2]).macs

    path = tmp_path / "pruned.keras"
    pruned.save(path)
    with placeholder_initial_values():  # a weight the file fails to restore stays zero and shows below
        reloaded = keras.saving.load_model(path)
    sample = np.random.default_rng(9).random((1, *input_shape)).astype(np.float32)
    np.testing.assert_allclose(infer(reloaded, sample), infer(pruned, sample), atol=1e-6)
