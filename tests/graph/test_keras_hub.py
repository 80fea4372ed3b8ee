"""keras-hub segmentation models at small random-weight configurations (built from config: no presets)."""

import keras
import numpy as np
import pytest

from segprune import prune_channels
from segprune.graph import build_channel_graph, remove_channels
from tests.graph.harness import assert_prunes_exactly, randomize_weights, zeroed_copy

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


def segformer(image_shape=(32, 32, 3), hidden_dims=(8, 16)):
    """Two MiT stages (1 and 2 heads, spatial reduction 4 and 2), a SegFormer head: about 10k weights."""
    mit = keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2], layerwise_sr_ratios=[4, 2], max_drop_path_rate=0.1,
        layerwise_patch_sizes=[7, 3], layerwise_strides=[4, 2], image_shape=image_shape, hidden_dims=list(hidden_dims),
    )
    backbone = keras_hub.models.SegFormerBackbone(image_encoder=mit, projection_filters=hidden_dims[0])
    return keras_hub.models.SegFormerImageSegmenter(backbone=backbone, num_classes=3)


def test_segformer_prunes_a_whole_head_and_mlp_units_exactly():
    # LayerNormalization couples the residual stream and renormalises over the kept channels (handlers/channelwise.py), so
    # the exact comparison removes what sits between producers and consumers: an attention head, Mix-FFN hidden
    # units of both stages, decoder channels.
    model = segformer()
    randomize_weights(model)
    mit = model.backbone.image_encoder
    block = mit.get_layer("hierarchical_encoder_1_0")
    graph = build_channel_graph(model)
    heads = graph.group_of_layer(block.attn.q.name)
    assert heads.size == 2 and set(heads.producers) == {block.attn.q.name, block.attn.k.name, block.attn.v.name}
    removed = (
        heads.classes[:1]
        + graph.group_of_layer(block.mlp.fc1.name).classes[3:5]
        + graph.group_of_layer(mit.get_layer("hierarchical_encoder_0_0").mlp.fc1.name).classes[:1]
        + graph.group_of_layer(model.backbone.linear_fuse.layers[0].name).classes[2:3]
        + graph.group_of_layer(model.backbone.mlp_blocks[0].name).classes[:2]
    )
    pruned = remove_channels(graph, removed)
    sample = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    expected, actual = zeroed_copy(graph, removed).predict(sample, verbose=0), pruned.predict(sample, verbose=0)
    assert actual.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    assert np.abs(expected - model.predict(sample, verbose=0)).max() > 1e-2  # the removed channels mattered
    attention = [layer for layer in pruned.layers[1].layers[1].get_layer("hierarchical_encoder_1_0").layers if layer.name == block.attn.name][0]
    assert attention.get_layer(block.attn.q.name).units == 8  # one of two heads of 8


def test_a_model_built_for_a_fixed_size_is_traced_at_that_size():
    # Cost estimates trace at a requested size; keras-hub bakes its input size into resizes and reshapes.
    graph = build_channel_graph(_deeplab(), input_shape=(256, 256))
    assert graph.trace.calls[0].input_shapes[0] == (1, 64, 64, 3)
