"""keras-hub segmentation models at small random-weight configurations (built from config: no presets)."""

import keras
import numpy as np
import pytest

from segprune import prune_channels
from tests.graph.harness import assert_prunes_exactly

keras_hub = pytest.importorskip("keras_hub")


def _resnet(image_shape):
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 32], stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2], block_type="basic_block", use_pre_activation=False, image_shape=image_shape,
    )


def _deeplab(image_shape=(64, 64, 3)):
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=_resnet(image_shape), low_level_feature_key="P2", spatial_pyramid_pooling_key="P3",
        dilation_rates=[2, 4], upsampling_size=2, image_shape=image_shape,
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)


def test_resnet_backbone_prunes_exactly():
    assert_prunes_exactly(_resnet((64, 64, 3)), (64, 64, 3), atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_deeplab_v3_prunes_exactly_through_spatial_pyramid_pooling(seed):
    assert_prunes_exactly(_deeplab(), (64, 64, 3), seed=seed, atol=1e-4)


def test_deeplab_v3_prunes_and_round_trips(tmp_path):
    model = _deeplab()
    pruned = prune_channels(model, ratio=0.5)
    sample = np.random.default_rng(0).random((1, 64, 64, 3)).astype(np.float32)
    assert pruned.predict(sample, verbose=0).shape == (1, 64, 64, 3)
    assert pruned.count_params() < 0.5 * model.count_params()
    path = tmp_path / "deeplab.keras"
    pruned.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(sample, verbose=0), pruned.predict(sample, verbose=0), atol=1e-5)
