"""`segprune.prune(..., heads=R)` on a Mask R-CNN: the RoI heads lose R of their channels exactly, priced per region."""

import keras
import numpy as np
import pytest

import segprune
from segprune.graph.groups import build_channel_graph
from segprune.models.mask_rcnn import MaskRCNN, load_mask_rcnn, mask_rcnn
from segprune.structured.importance import channel_importance
from segprune.structured.selection import UniformRatio
from tests.fixtures import TINY_MASK_RCNN
from tests.graph.harness import randomize_weights, zeroed_copy


def _zeroed_head(head: keras.Model, pool_size: int, ratio: float) -> keras.Model:
    """`head` with the channels l1 at `ratio` removes (round_to 1) zeroed in every consumer instead."""
    graph = build_channel_graph(head, input_shape=(pool_size, pool_size))
    removed = UniformRatio(ratio).select(graph, channel_importance(graph, "l1"), 1)
    assert removed, "the heads' ratio removes channels"
    return zeroed_copy(graph, removed)


def test_pruned_heads_equal_the_original_heads_with_those_channels_zeroed(tmp_path):
    keras.utils.set_random_seed(4)
    model = mask_rcnn(detection_min_score=0.0, max_detections=8, **TINY_MASK_RCNN)
    for head in (model.box_head, model.mask_head):
        randomize_weights(head, seed=1)  # biases away from zero: a wrongly sliced bias would show
    dense_weights = [weight.copy() for weight in model.box_head.get_weights()]
    out = tmp_path / "pruned.keras"
    result = segprune.prune(model, "l1", ratio=0.5, heads=0.5, round_to=1, image_size=64, checkpoint_path=out)
    pruned, config = result.model, model.config

    assert [layer.units for layer in pruned.box_head.layers if layer.name in ("box_fc1", "box_fc2")] == [8, 8]
    assert pruned.mask_head.get_layer("mask_conv1").filters == 4 and pruned.mask_head.get_layer("mask_up").filters == 4
    zeroed = MaskRCNN(config, pruned.trunk, _zeroed_head(model.box_head, config.pool_size, 0.5), _zeroed_head(model.mask_head, config.mask_pool_size, 0.5))
    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(6, config.pool_size, config.pool_size, config.fpn_filters)).astype(np.float32)
    for got, expected in zip(pruned.box_head(pooled), zeroed.box_head(pooled)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
    pooled = rng.normal(size=(6, config.mask_pool_size, config.mask_pool_size, config.fpn_filters)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(pruned.mask_head(pooled)), np.asarray(zeroed.mask_head(pooled)), atol=1e-5)

    images = rng.random((1, 64, 64, 1)).astype(np.float32)
    (got,), (expected,) = pruned.detect(images), zeroed.detect(images)
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)
    assert np.array_equal(got.masks, expected.masks)

    heads = result.heads
    assert heads.ratio == 0.5 and heads.importance == "l1"
    assert 0.2 < heads.box.macs_ratio < 0.6 and 0.2 < heads.mask.macs_ratio < 0.6  # per region, at the pooled sizes
    assert heads.box.macs_before == sum(layer.macs_before for layer in heads.box.layers) > 0
    assert "MMACs per RoI" in heads.lines()[0] and heads.lines()[1].startswith("mask head:")
    (reloaded,) = load_mask_rcnn(out).detect(images)
    np.testing.assert_allclose(reloaded.scores, got.scores, atol=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(dense_weights, model.box_head.get_weights(), strict=True)), "the dense model is untouched"


@pytest.mark.parametrize("heads", [1.0, -0.1, "0.5", True])
def test_a_heads_ratio_outside_0_1_is_refused(heads):
    with pytest.raises(ValueError, match=r"share of their channels to remove, a number in \[0, 1\)"):
        segprune.prune(mask_rcnn(**TINY_MASK_RCNN), "l1", ratio=0.5, heads=heads, round_to=1, image_size=64)


def test_heads_on_a_model_without_them_are_refused():
    model = segprune.models.unet(num_classes=2, input_channels=1, base_filters=4, depth=2)
    with pytest.raises(ValueError, match="prunes a Mask R-CNN's RoI heads; this model .* has none"):
        segprune.prune(model, "l1", ratio=0.5, heads=0.5)
