"""The built-in ViT segmenter: heads and MLP units prune exactly, the default round_to removes whole heads, MACs match
a count from its configuration; in a sweep (make test-all) the pruned model exports and is timed."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segprune import prune_channels
from segprune.cost import flops
from segprune.graph.groups import build_channel_graph
from segprune.graph.surgery import remove_channels
from segprune.models import build_model
from segprune.models.vit_segmenter import vit_segmenter
from tests.graph.harness import choose_channels, infer, randomize_weights, zeroed_copy

SMALL = dict(patch_size=4, hidden_dim=16, num_layers=2, num_heads=4, mlp_dim=24, head_filters=8)


def _macs(height: int, width: int, heads: list[int], units: list[int], head_filters: int, patch: int = 4, dim: int = 16,
          head_size: int = 4, channels: int = 1, outputs: int = 1) -> int:
    """MACs from the widths: patch embedding, position convolution, per block q/k/v/output projections, q@k and
    scores@v, the MLP; the head's 3x3 convolution on the token grid and its 1x1 logits at full size."""
    tokens = (height // patch) * (width // patch)
    total = tokens * patch * patch * channels * dim + tokens * 9 * dim
    for kept_heads, kept_units in zip(heads, units):
        inner = kept_heads * head_size
        total += 4 * tokens * dim * inner + 2 * tokens * tokens * inner + 2 * tokens * dim * kept_units
    return total + tokens * 9 * dim * head_filters + height * width * head_filters * outputs


def _kept(model: keras.Model) -> tuple[list[int], list[int]]:
    layers = list(model._flatten_layers())
    return [layer.kernel.shape[1] for layer in layers if layer.name == "query"], [layer.units for layer in layers if layer.name.endswith("_fc1")]


def test_heads_and_mlp_units_prune_exactly_with_the_token_width_kept():
    model = vit_segmenter(num_classes=3, input_channels=2, **SMALL)
    randomize_weights(model, seed=1)
    graph = build_channel_graph(model, ("patch_embedding",))  # the token width, normalised by every LayerNorm, stays
    removed = choose_channels(graph, seed=1, share_of_groups=1.0)
    pruned = remove_channels(graph, removed)
    sample = np.random.default_rng(1).random((2, 24, 16, 2)).astype(np.float32)  # any multiple of the patch size
    np.testing.assert_allclose(infer(pruned, sample), infer(zeroed_copy(graph, removed), sample), atol=1e-5, rtol=0)
    heads, units = _kept(pruned)
    assert min(heads) < 4 and min(units) < 24


def test_macs_match_a_count_from_the_configuration_before_and_after_pruning():
    model = vit_segmenter(**SMALL)
    assert flops(model, (32, 48)).macs == _macs(32, 48, [4, 4], [24, 24], 8)
    pruned = prune_channels(model, target="flops=0.6", round_to=1, image_size=(32, 48), ignore=["patch_embedding"])
    heads, units = _kept(pruned)
    counted = _macs(32, 48, heads, units, pruned.get_layer("head_conv").filters)
    assert counted == flops(pruned, (32, 48)).macs <= 0.6 * flops(model, (32, 48)).macs


@pytest.mark.parametrize(("head_size", "round_to", "step"), [(8, 8, 1), (4, 8, 2), (16, 8, 1), (4, 16, 4), (8, 1, 1)])
def test_round_to_counts_the_channels_of_a_head_not_heads(head_size, round_to, step):
    model = vit_segmenter(patch_size=4, hidden_dim=8 * head_size, num_layers=1, num_heads=8, mlp_dim=16, head_filters=8)
    graph = build_channel_graph(model, ("patch_embedding",))
    heads = [group for group in graph.prunable_groups() if "query" in group.producers]
    assert [(group.size, group.width, group.step(round_to)) for group in heads] == [(8, head_size, step)]


def test_the_default_round_to_removes_whole_heads_of_eight():
    model = build_model("vit-segmenter", num_classes=2, input_channels=1, patch_size=8, hidden_dim=64, num_layers=1, num_heads=8, mlp_dim=64, head_filters=8)
    pruned = prune_channels(model, target="flops=0.5", image_size=(64, 64), ignore=["patch_embedding"])
    heads, units = _kept(pruned)
    assert heads[0] < 8 and units[0] % 8 == 0  # round_to 8 counts a head's 8 channels; MLP units stay multiples of 8


def test_a_head_width_that_does_not_divide_the_token_width_is_refused():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        vit_segmenter(hidden_dim=30, num_heads=4)


@pytest.mark.exhaustive  # a whole sweep (ONNX export verified against Keras, timing, report rows): `make test-all`
def test_a_sweep_prunes_its_heads_and_mlp_units_and_keeps_an_ignored_token_width(tmp_path):
    from segprune.data import synthetic_dataset
    from segprune.experiments import SweepConfig, run_sweep
    from segprune.models import load_model

    data = synthetic_dataset(num_train=4, num_val=2, num_test=2, image_size=32, seed=0)
    model = vit_segmenter(data.num_classes, data.image_channels, patch_size=4, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=32, head_filters=16)
    config = SweepConfig(methods=("oneshot-l1",), budgets=(0.5,), finetune_epochs=0, image_size=32, ignore=("patch_embedding",))
    rows = run_sweep(model, data, tmp_path, config)
    pruned_row = next(row for row in rows if row["method"] == "oneshot-l1")
    pruned = load_model(pruned_row["model_path"])
    heads, units = _kept(pruned)
    assert pruned.get_layer("patch_embedding").filters == 32 and pruned_row["macs_ratio"] <= 0.5
    assert sum(heads) + sum(units) < 2 * 4 + 2 * 32
