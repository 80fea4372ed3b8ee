"""Segment Anything (keras-hub's SAMImageSegmenter) at a small random-weight configuration: its ViTDet image encoder
prunes exactly by whole heads and MLP units, the pruned SAM answers the same point and box prompts, and
`segprune prune SAM.keras --target flops=0.5` meets the budget by a count of the whole model's MACs from its
configuration (prompt encoder and mask decoder, kept whole, included)."""

import keras
import numpy as np
import pytest

from segprune.cli import main
from segprune.cost import flops
from segprune.graph import build_channel_graph, remove_channels
from tests.graph.harness import choose_channels, infer, randomize_position_tables, randomize_weights, zeroed_copy

keras_hub = pytest.importorskip("keras_hub")
from segprune.models.sam import image_encoder, is_sam, neck_layers, with_image_encoder  # noqa: E402  (after the skip)

IMAGE, PATCH, WIDTH, HEADS, UNITS, WINDOW, EMBEDDING = 64, 8, 32, 4, 128, 4, 16
GRID, HEAD_SIZE = IMAGE // PATCH, WIDTH // HEADS
DECODER_UNITS, DECODER_HEADS, IOU_UNITS, MASKS = 32, 2, 16, 4


def _sam() -> keras.Model:
    """A windowed block (4x4 windows) and a global one over an 8x8 grid of 32 channels, a 16-channel neck, one
    two-way decoder layer; random relative-position tables and position embedding (keras-hub starts them at zero)."""
    encoder = keras_hub.models.ViTDetBackbone(
        hidden_size=WIDTH, num_layers=2, intermediate_dim=UNITS, num_heads=HEADS, global_attention_layer_indices=[1],
        image_shape=(IMAGE, IMAGE, 3), patch_size=PATCH, num_output_channels=EMBEDDING, window_size=WINDOW,
    )
    prompt_encoder = keras_hub.layers.SAMPromptEncoder(
        hidden_size=EMBEDDING, image_embedding_size=(GRID, GRID), input_image_size=(IMAGE, IMAGE), mask_in_channels=4
    )
    mask_decoder = keras_hub.layers.SAMMaskDecoder(
        num_layers=1, hidden_size=EMBEDDING, intermediate_dim=DECODER_UNITS, num_heads=DECODER_HEADS, embedding_dim=EMBEDDING,
        num_multimask_outputs=MASKS - 1, iou_head_depth=2, iou_head_hidden_dim=IOU_UNITS,
    )
    backbone = keras_hub.models.SAMBackbone(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder)
    model = keras_hub.models.SAMImageSegmenter(backbone=backbone)
    randomize_weights(model)
    randomize_position_tables(encoder)
    return model


def _prompts(kind: str) -> dict:
    """Two images, each with one box or with a foreground and a background point (padded as keras-hub asks)."""
    rng = np.random.default_rng(0)
    prompts = {"images": rng.random((2, IMAGE, IMAGE, 3)).astype(np.float32) * 255}
    if kind == "box":
        prompts.update(points=np.zeros((2, 0, 2), np.float32), labels=np.zeros((2, 0), np.float32), boxes=np.array([[[[8, 8], [40, 48]]]] * 2, np.float32))
    else:
        prompts.update(
            points=np.array([[[20, 30], [50, 10], [0, 0]]] * 2, np.float32), labels=np.array([[1, 0, -1]] * 2, np.float32),
            boxes=np.zeros((2, 0, 2, 2), np.float32),
        )
    return {**prompts, "masks": np.zeros((2, 0, 4 * GRID, 4 * GRID, 1), np.float32)}


def _answers(model: keras.Model, kind: str) -> dict:
    outputs = model(_prompts(kind), training=False)
    return {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}


def test_the_image_encoder_prunes_heads_and_mlp_units_exactly_and_the_sam_answers_the_same_prompts():
    sam = _sam()
    encoder = image_encoder(sam)
    graph = build_channel_graph(encoder, ignore=neck_layers(sam))
    assert graph.pinned == []
    # every block's heads (of 8 channels) and MLP units; the neck, normalised over its channels, stays whole
    assert sorted(group.size for group in graph.prunable_groups()) == [HEADS, HEADS, UNITS, UNITS]
    removed = choose_channels(graph, seed=0, share_of_groups=1.0, share_of_channels=0.5)
    pruned, zeroed = remove_channels(graph, removed), zeroed_copy(graph, removed)
    images = _prompts("box")["images"]
    np.testing.assert_allclose(infer(pruned, images), infer(zeroed, images), atol=1e-5, rtol=0)
    assert np.abs(infer(zeroed, images) - infer(encoder, images)).max() > 1e-2  # the removed heads and units mattered
    pruned_sam, zeroed_sam = with_image_encoder(sam, pruned), with_image_encoder(sam, zeroed)
    assert is_sam(pruned_sam)
    for kind in ("box", "points"):
        expected, actual = _answers(zeroed_sam, kind), _answers(pruned_sam, kind)
        assert {name: value.shape for name, value in actual.items()} == {name: value.shape for name, value in _answers(sam, kind).items()}
        assert actual["masks"].shape == (2, MASKS, 4 * GRID, 4 * GRID)
        for name in ("masks", "iou_pred"):
            np.testing.assert_allclose(actual[name], expected[name], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="embeddings of shape"):
        with_image_encoder(sam, keras.Model(encoder.inputs, encoder.outputs[0][..., :8]))


# MACs counted by hand from the configuration, for one box prompt (two corner tokens).


def _encoder_macs(heads: list[int], units: list[int]) -> int:
    """Patch projection, then per block (windowed 4x4, global 8x8) the projections, the scores and values per
    head with the row and column relative-position terms, the MLP; then the neck (1x1 and 3x3 convolutions)."""
    tokens = GRID * GRID
    total = tokens * PATCH * PATCH * 3 * WIDTH
    for window, kept_heads, kept_units in zip([WINDOW, GRID], heads, units):
        windows, per_window = (GRID // window) ** 2, window * window
        inner = kept_heads * HEAD_SIZE
        total += tokens * WIDTH * 3 * inner + tokens * inner * WIDTH
        total += windows * kept_heads * per_window * (2 * per_window + 2 * window) * HEAD_SIZE
        total += 2 * tokens * WIDTH * kept_units
    return total + tokens * WIDTH * EMBEDDING + tokens * 9 * EMBEDDING * EMBEDDING


def _attention_macs(queries: int, keys: int, inner: int) -> int:
    """keras-hub's MultiHeadAttentionWithDownsampling: query, key and value projections to `inner`, scores and
    values over every head's share of `inner`, the output projection back."""
    return queries * EMBEDDING * inner + 2 * keys * EMBEDDING * inner + 2 * queries * keys * inner + queries * inner * EMBEDDING


def _prompt_and_decoder_macs() -> int:
    """Prompt encoder (random Fourier features of the two box corners and of the 8x8 grid) and mask decoder."""
    tokens, image_tokens, downsampled = 1 + MASKS + 2, GRID * GRID, EMBEDDING // 2
    total = 2 * 2 * (EMBEDDING // 2) + image_tokens * 2 * (EMBEDDING // 2)
    total += 2 * _attention_macs(tokens, tokens, EMBEDDING)  # keras-hub's first layer runs its self-attention twice
    total += _attention_macs(tokens, image_tokens, downsampled) + 2 * tokens * EMBEDDING * DECODER_UNITS
    total += _attention_macs(image_tokens, tokens, downsampled) + _attention_macs(tokens, image_tokens, downsampled)
    upscaled = 4 * image_tokens * 4  # two 2x2 stride-2 transposed convolutions: 16 -> 4 -> 2 channels
    total += image_tokens * 4 * EMBEDDING * (EMBEDDING // 4) + 4 * image_tokens * 4 * (EMBEDDING // 4) * (EMBEDDING // 8)
    total += MASKS * (2 * EMBEDDING * EMBEDDING + EMBEDDING * (EMBEDDING // 8)) + MASKS * (EMBEDDING // 8) * upscaled
    return total + EMBEDDING * IOU_UNITS + IOU_UNITS * MASKS


def test_prune_on_a_saved_sam_meets_half_the_whole_models_macs_answers_prompts_and_exports_its_encoder(tmp_path, capsys):
    sam = _sam()
    path, out = tmp_path / "sam.keras", tmp_path / "pruned.keras"
    sam.save(path)
    assert main(["prune", str(path), "--target", "flops=0.5", "--round-to", "1", "--out", str(out)]) == 0
    pruned = keras.saving.load_model(out)
    assert is_sam(pruned)
    encoder = image_encoder(pruned)
    heads, units = _kept_widths(encoder)
    dense_encoder, pruned_encoder = _encoder_macs([HEADS] * 2, [UNITS] * 2), _encoder_macs(heads, units)
    assert flops(image_encoder(sam), (IMAGE, IMAGE)).macs == dense_encoder
    assert flops(encoder, (IMAGE, IMAGE)).macs == pruned_encoder <= 0.5 * dense_encoder
    rest = _prompt_and_decoder_macs()
    assert (pruned_encoder + rest) / (dense_encoder + rest) <= 0.55
    for kind in ("box", "points"):  # the reloaded pruned SAM answers prompts with the dense SAM's shapes
        dense, answered = _answers(sam, kind), _answers(pruned, kind)
        assert {name: value.shape for name, value in answered.items()} == {name: value.shape for name, value in dense.items()}
        assert np.isfinite(answered["masks"]).all() and np.abs(answered["masks"] - dense["masks"]).max() > 1e-3
    # the encoder exports to ONNX, verified against Keras (export_model writes the file only within tolerance)
    assert main(["export", str(out), "--out", str(tmp_path / "encoder.onnx"), "--input-shape", f"1x{IMAGE}x{IMAGE}"]) == 0
    assert (tmp_path / "encoder.onnx").exists() and "image encoder" in capsys.readouterr().out


def _kept_widths(encoder: keras.Model) -> tuple[list[int], list[int]]:
    """Per block of a pruned encoder (traced into nested models named after keras-hub's layers): kept heads, MLP units."""
    blocks = [layer for layer in encoder.layers if layer.name.startswith("windowed_transformer_encoder")]
    heads, units = [], []
    for block in blocks:
        attention = next(layer for layer in block.layers if layer.name.startswith("multi_head_attention_with_relative_pe"))
        qkv = next(layer for layer in attention.layers if isinstance(layer, keras.layers.Dense) and layer.kernel.shape[0] == WIDTH)
        mlp = next(layer for layer in block.layers if layer.name.startswith("mlp"))
        heads.append(qkv.units // (3 * HEAD_SIZE))
        units.append(next(layer for layer in mlp._flatten_layers() if isinstance(layer, keras.layers.Dense) and layer.kernel.shape[0] == WIDTH).units)
    assert len(heads) == 2
    return heads, units
