"""Vision transformers: Keras's MultiHeadAttention in a transformer block, keras-hub's ViT and DINOv2 (registers,
LayerScale, stochastic depth) at tiny random-weight configurations built from their constructors (no presets).
Whole heads (query, key, value and the output projection's rows together) and MLP hidden units prune exactly:
the pruned model equals the original whose removed heads and units were zeroed. The embedding width (the
residual stream every LayerNorm normalises) is kept whole, since removing it cannot be exact."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from segprune import prune_channels
from segprune.cost import flops
from segprune.cost.resources import macs_after
from segprune.graph import build_channel_graph, remove_channels
from tests.graph.harness import assert_prunes_exactly, infer, randomize_position_tables, randomize_weights, zeroed_copy

TOKENS, WIDTH, HEADS, KEY_DIM, HIDDEN = 12, 8, 2, 4, 16


def _transformer_block(attention: dict, call: dict, cross: bool = False, mask: bool = False) -> keras.Model:
    """Pre-norm transformer block as written with Keras layers: MultiHeadAttention, then a GELU MLP."""
    inputs = [keras.Input((TOKENS, WIDTH), name="tokens")]
    x = keras.layers.Dense(WIDTH, name="embed")(inputs[0])
    context = x
    if cross:
        inputs.append(keras.Input((TOKENS // 2, WIDTH), name="context"))
        context = keras.layers.Dense(WIDTH, name="context_embed")(inputs[-1])
    if mask:
        inputs.append(keras.Input((TOKENS, TOKENS), name="mask"))
        call = {**call, "attention_mask": inputs[-1]}
    normed = keras.layers.LayerNormalization(name="ln_1")(x)
    mha = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="mha", **attention)
    x = x + mha(normed, context if cross else normed, **call)
    hidden = keras.layers.Dense(HIDDEN, activation="gelu", name="fc1")(keras.layers.LayerNormalization(name="ln_2")(x))
    x = x + keras.layers.Dense(WIDTH, name="fc2")(keras.layers.Dropout(0.1)(hidden))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def _samples(model: keras.Model) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    samples = []
    for spec in model.inputs:
        if spec.name == "mask":  # each token sees itself and a random half of the others
            samples.append(np.maximum(rng.random((2, TOKENS, TOKENS)) < 0.5, np.eye(TOKENS)[None]).astype(np.float32))
        else:
            samples.append(rng.random((2, *spec.shape[1:])).astype(np.float32))
    return samples


BLOCKS = {
    "fused": ({}, {}, False, False),  # keras runs ops.dot_product_attention
    "einsum": ({"dropout": 0.1}, {}, False, False),  # with dropout it runs einsums and a Softmax layer
    "causal": ({}, {"use_causal_mask": True}, False, False),
    "mask": ({}, {}, False, True),  # an attention mask passed by keyword
    "mask_einsum": ({"dropout": 0.1}, {}, False, True),  # the mask reaches the Softmax layer
    "cross_value_dim": ({"value_dim": 3, "dropout": 0.1}, {}, True, False),  # queries from one tensor, keys and values from another
}


@pytest.mark.parametrize("case", list(BLOCKS))
def test_multi_head_attention_block_prunes_a_head_and_mlp_units_exactly(case, tmp_path):
    model = _transformer_block(*BLOCKS[case])
    randomize_weights(model)
    graph = build_channel_graph(model)
    assert graph.pinned == []
    heads, hidden = graph.group_of_layer("mha/query"), graph.group_of_layer("fc1")
    assert heads.size == HEADS and set(heads.producers) == {"query", "key", "value"}
    assert hidden.size == HIDDEN and hidden.num_prunable == HIDDEN
    removed = heads.classes[1:] + hidden.classes[2:9]
    pruned = remove_channels(graph, removed)
    samples = _samples(model)
    expected, actual = infer(zeroed_copy(graph, removed), samples), infer(pruned, samples)
    assert actual.shape == (2, TOKENS, 3)
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    assert np.abs(expected - infer(model, samples)).max() > 1e-3  # the removed head and units mattered
    attention = pruned.get_layer("mha")  # the attention layer, rewritten with one head of each projection
    value_dim = BLOCKS[case][0].get("value_dim", KEY_DIM)
    kernels = {name: tuple(attention.get_layer(name).kernel.shape) for name in ("query", "key", "value", "attention_output")}
    assert kernels == {"query": (WIDTH, 1, KEY_DIM), "key": (WIDTH, 1, KEY_DIM), "value": (WIDTH, 1, value_dim), "attention_output": (1, value_dim, WIDTH)}
    assert pruned.get_layer("fc1").units == HIDDEN - 7
    path = tmp_path / "pruned.keras"
    pruned.save(path)  # plain layers and keras.ops: no custom objects
    np.testing.assert_allclose(infer(keras.saving.load_model(path), samples), actual, atol=1e-6)


def test_a_causal_mask_is_kept_when_the_attention_is_traced():
    # Traced without its keyword arguments, the attention would see every token: the outputs would differ.
    model = _transformer_block({}, {"use_causal_mask": True})
    graph = build_channel_graph(model)
    samples = _samples(model)
    np.testing.assert_allclose(infer(remove_channels(graph, []), samples), infer(model, samples), atol=1e-6)


keras_hub = pytest.importorskip("keras_hub")


def vit(num_layers: int = 2) -> keras.Model:
    """Two blocks of two heads of 4 over 16 patches and a class token: about 1.6k weights."""
    return keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=4, num_layers=num_layers, num_heads=HEADS, hidden_dim=WIDTH, mlp_dim=12)


def dinov2(**options) -> keras.Model:
    """DINOv2 with two register tokens, LayerScale (0.5) and stochastic depth (the identity at inference)."""
    return keras_hub.models.DINOV2Backbone(
        patch_size=4, num_layers=2, hidden_dim=WIDTH, num_heads=HEADS, intermediate_dim=12, image_shape=(16, 16, 3),
        position_embedding_shape=(16, 16), num_register_tokens=2, layer_scale_init_value=0.5, drop_path_rate=0.1, **options,
    )


def _block_groups(graph, names: tuple[str, ...]):
    """The prunable groups, by the producers that make them: every block's own heads and its own MLP units."""
    return sorted((tuple(group.producers), group.size) for group in graph.prunable_groups() if set(group.producers) & set(names))


@pytest.mark.parametrize("seed", [0, 1])
def test_vit_prunes_heads_and_mlp_units_exactly(seed, tmp_path):
    model = vit() if seed == 0 else keras_hub.models.ViTBackbone(  # without the patch bias its config leaves out
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=HEADS, hidden_dim=WIDTH, mlp_dim=12, use_patch_bias=False
    )
    graph = build_channel_graph(model)
    assert graph.pinned == []
    # each block's heads and MLP units are groups of their own, though every block names its layers alike
    assert _block_groups(graph, ("query", "dense_1")) == [(("dense_1",), 12)] * 2 + [(("key", "query", "value"), HEADS)] * 2
    assert graph.group_of_layer("vit_patching_and_embedding").num_prunable == 0  # the embedding width stays
    pruned = assert_prunes_exactly(model, (16, 16, 3), seed=seed, atol=1e-5)
    assert pruned.output_shape == model.output_shape
    path = tmp_path / "vit.keras"
    pruned.save(path)  # keras-hub's embedding writes a config its constructor refuses (repaired by segprune)
    sample = np.ones((1, 16, 16, 3), np.float32)
    np.testing.assert_allclose(infer(keras.saving.load_model(path), sample), infer(pruned, sample), atol=1e-6)
    if seed == 0:  # segprune.load_model repairs keras-hub before loading, in a process that has built no graph
        script = f"import segprune; print(segprune.load_model({str(path)!r}).output_shape)"
        loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert loaded.stdout.strip().splitlines()[-1:] == [str(pruned.output_shape)], loaded.stderr[-2000:]


def test_dinov2_with_registers_and_layer_scale_prunes_heads_and_mlp_units_exactly(tmp_path):
    model = dinov2()
    randomize_weights(model)
    graph = build_channel_graph(model)
    assert graph.pinned == []
    assert _block_groups(graph, ("query", "fc1")) == [(("fc1",), 12)] * 2 + [(("key", "query", "value"), HEADS)] * 2
    heads = [group for group in graph.prunable_groups() if "query" in group.producers]
    units = [group for group in graph.prunable_groups() if "fc1" in group.producers]
    removed = heads[0].classes[:1] + heads[1].classes[1:] + units[0].classes[:5] + units[1].classes[4:6]
    pruned = remove_channels(graph, removed)
    sample = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    expected, actual = infer(zeroed_copy(graph, removed), sample), infer(pruned, sample)
    assert actual.shape == (2, 1 + 2 + 16, WIDTH)  # class token, registers, patches
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    assert np.abs(expected - infer(model, sample)).max() > 1e-2
    assert pruned.count_params() < model.count_params()
    path = tmp_path / "dinov2.keras"
    pruned.save(path)
    np.testing.assert_allclose(infer(keras.saving.load_model(path), sample), actual, atol=1e-6)


def test_dinov2_swiglu_mlp_prunes_gate_and_value_units_together_exactly():
    model = dinov2(use_swiglu_ffn=True)
    randomize_weights(model)
    for layer in model._flatten_layers():
        if layer.name in ("weights_in", "weights_out"):  # drawn with stddev 0.02: enlarged, so removed units show
            layer.kernel.assign(layer.kernel * 20.0)
    graph = build_channel_graph(model)
    assert graph.pinned == []
    units = [group for group in graph.prunable_groups() if "weights_in" in group.producers]
    # the projection writes gate and value halves; unit j of each multiplies the other's, so they go together
    assert [group.size for group in units] == [8, 8]
    removed = units[0].classes[:3] + units[1].classes[5:]
    pruned = remove_channels(graph, removed)
    sample = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    expected, actual = infer(zeroed_copy(graph, removed), sample), infer(pruned, sample)
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    assert np.abs(expected - infer(model, sample)).max() > 1e-2
    kept = sorted(layer.kernel.shape[-1] for layer in pruned._flatten_layers() if layer.name == "weights_in")
    assert kept == [2 * 5, 2 * 5]


# MACs counted by hand from the configuration: every projection (tokens x inputs x outputs), and per head the
# scores (queries x keys x key size) and the weighted values (queries x keys x value size).


def _block_macs(heads: int, hidden: int, value_dim: int = KEY_DIM, keys: int = TOKENS, cross: bool = False) -> int:
    embed = TOKENS * WIDTH * WIDTH + (keys * WIDTH * WIDTH if cross else 0)
    projections = TOKENS * WIDTH * heads * KEY_DIM + keys * WIDTH * heads * (KEY_DIM + value_dim) + TOKENS * heads * value_dim * WIDTH
    attention = heads * TOKENS * keys * (KEY_DIM + value_dim)
    mlp = 2 * TOKENS * WIDTH * hidden
    return embed + projections + attention + mlp + TOKENS * WIDTH * 3


@pytest.mark.parametrize("case", ["fused", "einsum", "cross_value_dim"])
def test_multi_head_attention_macs_count_the_attention_before_and_after_pruning(case):
    model = _transformer_block(*BLOCKS[case])
    cross = BLOCKS[case][2]
    shape = dict(value_dim=BLOCKS[case][0].get("value_dim", KEY_DIM), keys=TOKENS // 2 if cross else TOKENS, cross=cross)
    shapes = [tuple(spec.shape[1:]) for spec in model.inputs]
    graph = build_channel_graph(model)
    assert macs_after(graph, []) == _block_macs(HEADS, HIDDEN, **shape)
    removed = graph.group_of_layer("mha/query").classes[:1] + graph.group_of_layer("fc1").classes[:7]
    assert macs_after(graph, removed) == _block_macs(1, HIDDEN - 7, **shape)
    if not cross:  # flops() takes one input shape
        assert flops(model, shapes[0]).macs == _block_macs(HEADS, HIDDEN, **shape)
        assert flops(remove_channels(graph, removed), shapes[0]).macs == _block_macs(1, HIDDEN - 7, **shape)


def _matmul_attention(tokens: int = TOKENS) -> keras.Model:
    """Attention written with Dense layers, reshapes, transposes and `@` (as keras-hub's MiT writes it)."""
    inputs = keras.Input((tokens, WIDTH))

    def heads(name, order):
        return ops.transpose(keras.layers.Reshape((tokens, HEADS, KEY_DIM))(keras.layers.Dense(HEADS * KEY_DIM, name=name)(inputs)), order)

    scores = ops.softmax(heads("q", (0, 2, 1, 3)) @ heads("k", (0, 2, 3, 1)), axis=-1)
    merged = keras.layers.Reshape((tokens, HEADS * KEY_DIM))(ops.transpose(scores @ heads("v", (0, 2, 1, 3)), (0, 2, 1, 3)))
    return keras.Model(inputs, keras.layers.Dense(WIDTH, name="proj")(merged))


def test_matmul_attention_macs_lose_a_pruned_head_in_both_products():
    model = _matmul_attention()
    per_head = 3 * TOKENS * WIDTH * KEY_DIM + 2 * TOKENS * TOKENS * KEY_DIM + TOKENS * KEY_DIM * WIDTH
    assert flops(model, (TOKENS, WIDTH)).macs == HEADS * per_head
    graph = build_channel_graph(model)
    head = graph.group_of_layer("q")
    assert head.size == HEADS
    assert macs_after(graph, head.classes[:1]) == flops(remove_channels(graph, head.classes[:1]), (TOKENS, WIDTH)).macs == per_head


def test_vit_macs_match_a_count_from_its_configuration():
    image, patch, layers, mlp = 16, 4, 2, 12
    patches = (image // patch) ** 2
    tokens = patches + 1  # and the class token
    patch_embedding = patches * patch * patch * 3 * WIDTH
    attention = 3 * tokens * WIDTH * WIDTH + 2 * tokens * tokens * WIDTH + tokens * WIDTH * WIDTH  # every head together
    block = attention + 2 * tokens * WIDTH * mlp
    model = vit(layers)
    assert flops(model, (image, image)).macs == patch_embedding + layers * block
    graph = build_channel_graph(model)
    heads = [group for group in graph.prunable_groups() if "query" in group.producers]
    units = [group for group in graph.prunable_groups() if "dense_1" in group.producers]
    removed = heads[0].classes[:1] + units[1].classes[:4]  # one head of the first block, 4 units of the second
    pruned_macs = patch_embedding + layers * block - attention // HEADS - 2 * tokens * WIDTH * 4
    assert macs_after(graph, removed) == flops(remove_channels(graph, removed), (image, image)).macs == pruned_macs


def _dinov2_segmenter() -> keras.Model:
    """What a user builds: DINOv2 (2 blocks, 4 heads of 4, 2 registers) on 32x32 images, the patch tokens laid back on
    their 8x8 grid, a 3x3 convolution and 1x1 logits, upsampled to the image."""
    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=4, num_layers=2, hidden_dim=16, num_heads=4, intermediate_dim=32, image_shape=(32, 32, 3),
        position_embedding_shape=(32, 32), num_register_tokens=2,
    )
    inputs = keras.Input((32, 32, 3))
    grid = keras.layers.Reshape((8, 8, 16))(backbone(inputs)[:, 3:, :])  # class token and registers dropped
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="head_conv")(grid)
    return keras.Model(inputs, keras.layers.UpSampling2D(4, interpolation="bilinear")(keras.layers.Conv2D(3, 1, name="logits")(x)))


def _segmenter_macs(heads: list[int], units: list[int], head_filters: int) -> int:
    """The segmenter's MACs counted from its widths: per block the heads (of 4) and MLP units it keeps."""
    patches, width, size = 64, 16, 4
    tokens = 1 + 2 + patches
    total = patches * 4 * 4 * 3 * width
    for kept_heads, kept_units in zip(heads, units):
        total += 4 * tokens * width * kept_heads * size + 2 * kept_heads * tokens * tokens * size + 2 * tokens * width * kept_units
    return total + patches * 9 * width * head_filters + patches * head_filters * 3


def test_a_dinov2_segmenter_prunes_exactly_and_meets_a_flops_budget_by_an_independent_count():
    model = _dinov2_segmenter()
    assert_prunes_exactly(model, (32, 32, 3), atol=1e-5)
    dense = _segmenter_macs([4, 4], [32, 32], 16)
    assert flops(model, (32, 32)).macs == dense
    pruned = prune_channels(model, target="flops=0.5", round_to=1, image_size=(32, 32))
    layers = list(pruned._flatten_layers())
    heads = [layer.kernel.shape[1] for layer in layers if layer.name == "query"]
    units = [layer.units for layer in layers if layer.name == "fc1"]
    counted = _segmenter_macs(heads, units, pruned.get_layer("head_conv").filters)
    assert counted == flops(pruned, (32, 32)).macs <= 0.5 * dense
    assert min(heads) < 4  # heads went, not only MLP units


def vitdet(**options) -> keras.Model:
    """ViTDet on a 4x4 grid of patches: a global block, then a windowed one whose 3x3 windows pad the grid to 6x6;
    relative position tables and the position embedding drawn at random (keras-hub starts them at zero)."""
    model = keras_hub.models.ViTDetBackbone(**{
        "hidden_size": WIDTH, "num_layers": 2, "intermediate_dim": 16, "num_heads": HEADS, "global_attention_layer_indices": [0],
        "image_shape": (32, 32, 3), "patch_size": 8, "num_output_channels": 8, "window_size": 3, **options,
    })
    randomize_weights(model)
    randomize_position_tables(model)
    return model


def _vitdet_groups(graph):
    heads = [group for group in graph.prunable_groups() if group.size == HEADS]
    units = [group for group in graph.prunable_groups() if group.size == 16]
    return heads, units


def test_vitdet_prunes_heads_and_mlp_units_of_global_and_windowed_blocks_exactly(tmp_path):
    # keras-hub folds heads and windows into the batch axis; segprune traces a form of each block that keeps them
    # on axes of their own (segprune/graph/handlers/vision_transformer.py), equal to keras-hub's own call.
    model = vitdet()
    graph = build_channel_graph(model)
    assert graph.pinned == []
    sample = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(infer(graph.model, sample), infer(model, sample), atol=1e-5, rtol=0)
    heads, units = _vitdet_groups(graph)
    assert len(heads) == len(units) == 2  # one of each per block; the neck's channels are a group of their own
    removed = heads[0].classes[:1] + heads[1].classes[1:] + units[0].classes[:5] + units[1].classes[4:10]
    pruned = remove_channels(graph, removed)
    expected, actual = infer(zeroed_copy(graph, removed), sample), infer(pruned, sample)
    assert actual.shape == (2, 4, 4, 8)
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    assert np.abs(expected - infer(model, sample)).max() > 1e-2  # the removed heads and units mattered
    kernels = sorted(tuple(layer.kernel.shape) for layer in pruned._flatten_layers() if isinstance(layer, keras.layers.Dense) and layer.kernel.shape[0] == WIDTH)
    assert kernels == [(WIDTH, 10), (WIDTH, 11)] + [(WIDTH, 3 * 4)] * 2  # qkv of one head each, the MLPs' first layers
    path = tmp_path / "vitdet.keras"
    pruned.save(path)
    np.testing.assert_allclose(infer(keras.saving.load_model(path), sample), actual, atol=1e-6)


def test_vitdet_without_relative_positions_prunes_a_head_exactly():
    model = vitdet(use_rel_pos=False, use_abs_pos=False, window_size=2)
    graph = build_channel_graph(model)
    assert graph.pinned == []
    heads, units = _vitdet_groups(graph)
    removed = heads[1].classes[:1] + units[1].classes[:3]
    sample = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(infer(graph.model, sample), infer(model, sample), atol=1e-5, rtol=0)
    np.testing.assert_allclose(infer(remove_channels(graph, removed), sample), infer(zeroed_copy(graph, removed), sample), atol=1e-5, rtol=0)


def _vitdet_macs(heads: list[int], units: list[int], neck: int = 8) -> int:
    """ViTDet's MACs counted from vitdet()'s configuration and each block's kept heads (of 4 channels) and MLP units."""
    grid, size, patch = 4, 4, 8
    total = grid * grid * patch * patch * 3 * WIDTH
    for (window, padded), kept_heads, kept_units in zip([(grid, grid), (3, 6)], heads, units):
        windows, tokens = (padded // window) ** 2, window * window
        inner = kept_heads * size
        total += padded * padded * WIDTH * 3 * inner + padded * padded * inner * WIDTH  # qkv and output projections
        total += windows * kept_heads * tokens * (2 * tokens + 2 * window) * size  # scores, values, row and column terms
        total += 2 * grid * grid * WIDTH * kept_units
    return total + grid * grid * WIDTH * neck + grid * grid * 9 * neck * 8


def test_vitdet_macs_count_every_window_and_match_a_count_from_its_configuration():
    model = vitdet()
    assert flops(model, (32, 32)).macs == _vitdet_macs([2, 2], [16, 16])
    graph = build_channel_graph(model)
    heads, units = _vitdet_groups(graph)
    removed = heads[1].classes[:1] + units[0].classes[:7]
    assert macs_after(graph, removed) == flops(remove_channels(graph, removed), (32, 32)).macs == _vitdet_macs([2, 1], [9, 16])
