"""`segprune.prune(..., heads=R, pyramid=P)` on a Mask R-CNN: the RoI heads lose R of their channels and the pyramid
they pool P, exactly, the heads priced per region, the trunk pruned after at the pyramid's new width."""

import keras
import numpy as np
import pytest

import segprune
from segprune.cost import flops
from segprune.graph.groups import build_channel_graph
from segprune.models.mask_rcnn import MaskRCNN, load_mask_rcnn, mask_rcnn, save_mask_rcnn
from segprune.models.mask_rcnn.networks import pyramid_coupling
from segprune.structured.heads import prune_heads
from segprune.structured.importance import channel_importance
from segprune.structured.selection import LayerRatios
from tests.fixtures import TINY_MASK_RCNN
from tests.graph.harness import randomize_weights, zeroed_copy

# One producer of each group the heads step narrows in the tiny detector: the pyramid, the box head's two dense
# layers, the mask head's convolution and its upsampling.
NARROWED = ("fpn_p2", "box_fc1", "box_fc2", "mask_conv1", "mask_up")


def _detector() -> MaskRCNN:
    keras.utils.set_random_seed(4)
    model = mask_rcnn(detection_min_score=0.0, max_detections=8, **TINY_MASK_RCNN)
    for network in (model.trunk, model.box_head, model.mask_head):
        randomize_weights(network, seed=1)  # biases away from zero: a wrongly sliced bias would show
    return model


def _zeroed(model: MaskRCNN, ratio: float, narrowed=NARROWED) -> tuple[MaskRCNN, np.ndarray]:
    """`model` with the channels l1 at `ratio` removes (round_to 1) from the groups of `narrowed` zeroed in every consumer
    instead, and the pyramid channels among them: those are zeroed where the RPN convolution and both heads' first
    layers read them."""
    config = model.config
    graph = build_channel_graph(pyramid_coupling(model.trunk, model.box_head, model.mask_head, config), input_shape=(64, 64))
    removed = LayerRatios(dict.fromkeys(narrowed, ratio)).select(graph, channel_importance(graph, "l1"), 1)
    pyramid_classes = np.asarray(graph.group_of_layer("fpn_p2").classes)
    removed_pyramid = np.flatnonzero(np.isin(pyramid_classes, removed))
    assert len(removed_pyramid) < config.fpn_filters
    zeroed = zeroed_copy(graph, removed)
    return MaskRCNN(config, *(zeroed.get_layer(network.name) for network in (model.trunk, model.box_head, model.mask_head))), removed_pyramid


def _assert_equal_detections(got, expected) -> None:
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)
    assert np.array_equal(got.class_ids, expected.class_ids) and np.array_equal(got.masks, expected.masks)


def test_pruned_heads_and_pyramid_equal_the_original_with_those_channels_zeroed(tmp_path):
    model = _detector()
    dense_weights = [weight.copy() for weight in model.trunk.get_weights()]
    pruned, summary = prune_heads(model, 0.5, "l1", round_to=1, pyramid=0.5)
    zeroed, removed = _zeroed(model, 0.5)
    assert len(removed) == 4
    config = model.config
    kept = np.setdiff1d(np.arange(config.fpn_filters), removed)

    # The pyramid narrowed wherever it is written and read, and nowhere else in the trunk.
    trunk = pruned.trunk
    assert [trunk.get_layer(f"fpn_p{level}").filters for level in config.levels] == [4, 4, 4] and trunk.get_layer("rpn_conv").kernel.shape == (3, 3, 4, 8)
    assert trunk.get_layer("fpn_lateral2").filters == trunk.get_layer("c4b_conv").filters == 8
    np.testing.assert_array_equal(np.asarray(trunk.get_layer("fpn_p3").kernel), np.asarray(model.trunk.get_layer("fpn_p3").kernel)[..., kept])
    assert pruned.box_head.input.shape[1:] == (config.pool_size, config.pool_size, 4) and pruned.mask_head.get_layer("mask_conv1").kernel.shape[2] == 4
    assert [layer.units for layer in pruned.box_head.layers if layer.name in ("box_fc1", "box_fc2")] == [8, 8]
    assert pruned.mask_head.get_layer("mask_conv1").filters == 4 and pruned.mask_head.get_layer("mask_up").filters == 4
    # The reference reads no removed pyramid channel: RoIAlign's channel c of the pruned pyramid is the original's kept[c].
    assert not np.asarray(zeroed.trunk.get_layer("rpn_conv").kernel)[:, :, removed].any()
    assert not np.asarray(zeroed.mask_head.get_layer("mask_conv1").kernel)[:, :, removed].any()
    box_rows = np.asarray(zeroed.box_head.get_layer("box_fc1").kernel).reshape(config.pool_size, config.pool_size, config.fpn_filters, -1)
    assert not box_rows[:, :, removed].any()

    rng = np.random.default_rng(0)
    images = rng.random((1, 64, 64, 1)).astype(np.float32)
    got_features, expected_features = pruned.trunk(images), zeroed.trunk(images)
    for got, expected in zip(got_features[len(config.levels) :], expected_features[len(config.levels) :]):  # RPN logits and deltas
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
    corners = rng.uniform(0, 40, (6, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(4, 24, (6, 2))], axis=1).astype(np.float32)  # every level pooled from
    indices = np.zeros(6, np.int32)
    for size, head in ((config.pool_size, "box_head"), (config.mask_pool_size, "mask_head")):
        got = getattr(pruned, head)(pruned._pool(got_features[: len(config.levels)], boxes, indices, size))
        expected = getattr(zeroed, head)(zeroed._pool(expected_features[: len(config.levels)], boxes, indices, size))
        for got_output, expected_output in zip(keras.tree.flatten(got), keras.tree.flatten(expected)):
            np.testing.assert_allclose(np.asarray(got_output), np.asarray(expected_output), atol=1e-5)
    (got,), (expected,) = pruned.detect(images), zeroed.detect(images)
    _assert_equal_detections(got, expected)

    # Priced: the box head's first layer reads half the channels into half the units, the trunk's last convolutions shrink.
    assert summary.pyramid_channels == (8, 4) and summary.lines()[2].endswith("8 -> 4 channels")
    box_fc1 = next(layer for layer in summary.box.layers if layer.name == "box_fc1")
    assert box_fc1.macs_after * 4 == box_fc1.macs_before
    dense_cost, pruned_cost = ({cost.name: cost.macs for cost in flops(m.trunk, (64, 64)).layers} for m in (model, pruned))
    assert all(pruned_cost[f"fpn_p{level}"] * 2 == dense_cost[f"fpn_p{level}"] for level in config.levels)
    assert pruned_cost["rpn_conv"] * 2 == dense_cost["rpn_conv"] and pruned_cost["fpn_lateral2"] == dense_cost["fpn_lateral2"]
    (reloaded,) = load_mask_rcnn(save_mask_rcnn(pruned, tmp_path / "pruned.keras")).detect(images)
    _assert_equal_detections(reloaded, got)
    assert all(np.array_equal(a, b) for a, b in zip(dense_weights, model.trunk.get_weights(), strict=True)), "the dense model is untouched"


def test_heads_alone_keep_the_pyramid_and_equal_the_original_with_their_channels_zeroed():
    model = _detector()
    pruned, summary = prune_heads(model, 0.5, "l1", round_to=1)
    zeroed, removed = _zeroed(model, 0.5, narrowed=[name for name in NARROWED if name != "fpn_p2"])
    assert len(removed) == 0 and summary.pyramid_channels == (8, 8) and summary.pyramid_ratio is None
    assert all(np.array_equal(a, b) for a, b in zip(pruned.trunk.get_weights(), model.trunk.get_weights(), strict=True)), "the trunk is untouched"
    assert pruned.box_head.get_layer("box_fc1").units == 8 and pruned.mask_head.get_layer("mask_conv1").filters == 4
    images = np.random.default_rng(0).random((1, 64, 64, 1)).astype(np.float32)
    (got,), (expected,) = pruned.detect(images), zeroed.detect(images)
    _assert_equal_detections(got, expected)


def test_prune_narrows_the_heads_and_pyramid_then_the_trunk_to_a_share_of_the_dense_trunk(tmp_path):
    model = _detector()
    out = tmp_path / "pruned.keras"
    result = segprune.prune(model, "l1", target="flops=0.5", heads=0.5, pyramid=0.5, round_to=1, image_size=64, checkpoint_path=out, progress=False)
    pruned, dense_macs = result.model, flops(model.trunk, (64, 64)).macs
    assert pruned.trunk.get_layer("fpn_p2").filters == 4 and pruned.box_head.input.shape[-1] == 4
    # The summary and the target count from the dense trunk, the pyramid's share included.
    assert result.summary.macs_before == dense_macs and result.summary.macs_after == flops(pruned.trunk, (64, 64)).macs
    pyramid_only = flops(prune_heads(model, None, "l1", round_to=1, pyramid=0.5)[0].trunk, (64, 64)).macs / dense_macs
    assert result.summary.macs_ratio <= 0.5 < pyramid_only and result.summary.macs_ratio > 0.5 * pyramid_only  # not half of the narrowed trunk
    assert result.heads.ratio == result.heads.pyramid_ratio == 0.5 and result.heads.importance == "l1" and result.heads.pyramid_channels == (8, 4)
    assert 0.2 < result.heads.box.macs_ratio < 0.6 and 0.2 < result.heads.mask.macs_ratio < 0.6  # per region, at the pooled sizes
    assert result.heads.box.macs_before == sum(layer.macs_before for layer in result.heads.box.layers) > 0
    assert "MMACs per RoI" in result.heads.lines()[0] and result.heads.lines()[1].startswith("mask head:")
    images = np.random.default_rng(0).random((1, 64, 64, 1)).astype(np.float32)
    (reloaded,), (got,) = load_mask_rcnn(out).detect(images), pruned.detect(images)
    np.testing.assert_allclose(reloaded.scores, got.scores, atol=1e-5)


def test_ignoring_a_layer_that_reads_the_pyramid_keeps_it_whole():
    model = _detector()
    result = segprune.prune(model, "l1", ratio=0.5, heads=0.5, pyramid=0.5, round_to=1, ignore=["rpn_conv"], image_size=64, progress=False)
    pruned = result.model
    assert result.heads.pyramid_ratio is None, "the summary does not claim a pyramid cut that ignore= prevented"
    assert pruned.trunk.get_layer("fpn_p2").filters == 8 and pruned.box_head.input.shape[-1] == 8
    assert pruned.box_head.get_layer("box_fc1").units == 8  # the heads' own groups still narrow


@pytest.mark.parametrize("option", ["heads", "pyramid"])
@pytest.mark.parametrize("value", [1.0, -0.1, "0.5", True])
def test_a_heads_or_pyramid_ratio_outside_0_1_is_refused(option, value):
    with pytest.raises(ValueError, match=rf"The {option} ratio is the share of channels to remove, a number in \[0, 1\)"):
        segprune.prune(mask_rcnn(**TINY_MASK_RCNN), "l1", ratio=0.5, round_to=1, image_size=64, **{option: value})


@pytest.mark.parametrize("option", ["heads", "pyramid"])
def test_heads_or_pyramid_on_a_model_without_them_are_refused(option):
    model = segprune.models.unet(num_classes=2, input_channels=1, base_filters=4, depth=2)
    with pytest.raises(ValueError, match=rf"{option}=0.5 .* prunes a Mask R-CNN's RoI heads or the pyramid they pool; this model .* has none"):
        segprune.prune(model, "l1", ratio=0.5, **{option: 0.5})


def test_bn_scale_on_heads_without_batchnorm_says_it_ranked_by_l1():
    _, summary = prune_heads(_detector(), 0.5, "bn-scale", round_to=1)
    assert summary.importance == "l1 (bn-scale without a BatchNorm in the heads)"


def test_a_pyramid_ratio_that_alone_passes_the_target_is_refused():
    with pytest.raises(ValueError, match=r"pyramid= alone leaves the trunk at .* already within flops=0.99"):
        segprune.prune(_detector(), "l1", target="flops=0.99", pyramid=0.9, round_to=1, image_size=64, progress=False)
