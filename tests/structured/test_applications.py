"""Every keras.applications CNN built from supported layers prunes at ratio 0.5 and round-trips."""

import keras
import numpy as np
import pytest

from segprune import prune_channels, pruning_summary

APPLICATIONS = [
    "ResNet50", "ResNet50V2", "MobileNet", "MobileNetV2", "MobileNetV3Small", "DenseNet121",
    "EfficientNetB0", "EfficientNetV2B0", "Xception", "InceptionV3", "InceptionResNetV2", "NASNetMobile", "VGG16",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", APPLICATIONS)
def test_application_prunes_and_round_trips(name, tmp_path):
    model = getattr(keras.applications, name)(weights=None)
    size = model.input_shape[1] or 224
    pruned = prune_channels(model, ratio=0.5)
    sample = np.random.default_rng(0).random((1, size, size, 3)).astype(np.float32)
    output = pruned.predict(sample, verbose=0)
    assert output.shape == model.predict(sample, verbose=0).shape
    assert pruned.count_params() < 0.5 * model.count_params()
    summary = pruning_summary(model, pruned, (size, size))
    assert summary.params_before == model.count_params() and summary.params_after == pruned.count_params()
    assert summary.macs_ratio < 0.6
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(sample, verbose=0), output, atol=1e-5)


@pytest.mark.parametrize("name", ["ConvNeXtTiny"])
def test_unsupported_application_fails_clearly(name):
    from segprune.graph import UnsupportedLayerError

    with pytest.raises(UnsupportedLayerError, match="LayerNormalization"):
        prune_channels(getattr(keras.applications, name)(weights=None), ratio=0.5)
