"""Attention written with Dense layers and keras.ops (the way keras-hub's MiT writes it) and keras's own
MultiHeadAttention: traced into the graph, whole heads prune with query, key, value and output projection
consistent; MLP hidden units prune through a depthwise conv over tokens reshaped to an image."""

import keras
import numpy as np
import pytest
from keras import ops

from segprune.graph import build_channel_graph, register_traced, remove_channels
from tests.graph.harness import randomize_weights, zeroed_copy


class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention over tokens, reshaping by `ops.shape` (unknown batch) like keras-hub."""

    def __init__(self, dim, heads, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads
        self.q, self.k, self.v, self.proj = (keras.layers.Dense(dim, name=f"{self.name}_{n}") for n in ("q", "k", "v", "proj"))

    def build(self, input_shape):
        for dense in (self.q, self.k, self.v):
            dense.build(input_shape)
        self.proj.build(input_shape)

    def _split(self, x):
        batch, tokens, channels = ops.shape(x)
        return ops.transpose(ops.reshape(x, (batch, tokens, self.heads, channels // self.heads)), [0, 2, 1, 3])

    def call(self, x):
        batch, tokens, channels = ops.shape(x)
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        scores = ops.softmax((q @ ops.transpose(k, [0, 1, 3, 2])) * (channels // self.heads) ** -0.5, axis=-1)
        return self.proj(ops.reshape(ops.transpose(scores @ v, [0, 2, 1, 3]), (batch, tokens, channels)))


class ConvMLP(keras.layers.Layer):
    """Mix-FFN: Dense, depthwise 3x3 over the tokens laid out as an image, GELU, Dense."""

    def __init__(self, dim, hidden, side, **kwargs):
        super().__init__(**kwargs)
        self.side = side
        self.fc1 = keras.layers.Dense(hidden, name=f"{self.name}_fc1")
        self.dwconv = keras.layers.DepthwiseConv2D(3, padding="same", name=f"{self.name}_dw")
        self.fc2 = keras.layers.Dense(dim, name=f"{self.name}_fc2")

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.dwconv.build((None, self.side, self.side, self.fc1.units))
        self.fc2.build((None, None, self.fc1.units))

    def call(self, x):
        x = self.fc1(x)
        batch, channels = ops.shape(x)[0], ops.shape(x)[2]
        x = ops.reshape(self.dwconv(ops.reshape(x, (batch, self.side, self.side, channels))), (batch, -1, channels))
        return self.fc2(ops.gelu(x))


class Identity(keras.layers.Layer):
    """Stochastic depth at inference: returns its input (weightless, so it needs `register_traced`)."""

    def call(self, x, training=None):
        return x


def _model(side=4, dim=8, heads=2):
    inputs = keras.Input((side * 2, side * 2, 3))
    x = keras.layers.Conv2D(dim, 3, strides=2, padding="same", name="patch")(inputs)
    tokens = keras.layers.Reshape((side * side, dim))(x)
    tokens = tokens + Identity(name="drop_path")(SelfAttention(dim, heads, name="attention")(tokens))
    tokens = tokens + ConvMLP(dim, 4 * dim, side, name="mlp")(tokens)
    x = keras.layers.Reshape((side, side, dim))(tokens)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="logits")(x))


def _max_difference(graph, removed, shape):
    pruned = remove_channels(graph, removed)
    sample = np.random.default_rng(0).random((2, *shape)).astype(np.float32)
    return pruned, float(np.abs(pruned.predict(sample, verbose=0) - zeroed_copy(graph, removed).predict(sample, verbose=0)).max())


def test_a_whole_head_and_mlp_hidden_units_prune_exactly(monkeypatch, tmp_path):
    from segprune.graph import registry

    monkeypatch.setattr(registry, "_TRACED", set(registry._TRACED))  # this test's registration stays its own
    model = _model()
    pinned = build_channel_graph(model)  # without a handler, the stochastic depth keeps its channels whole
    assert [(pin.name, pin.reason.rsplit(".", 1)[-1]) for pin in pinned.pinned] == [("drop_path", "Identity")]
    assert pinned.group_of_layer("attention/attention_q").num_prunable == 2  # the heads inside still prune
    register_traced(Identity)
    randomize_weights(model)
    graph = build_channel_graph(model)
    heads = graph.group_of_layer("attention/attention_q")
    assert heads.size == 2 and set(heads.producers) == {"attention_q", "attention_k", "attention_v"}
    hidden = graph.group_of_layer("mlp/mlp_fc1")
    assert hidden.size == 32 and hidden.num_prunable == 32
    removed = heads.classes[1:] + hidden.classes[3:9]
    pruned, difference = _max_difference(graph, removed, (8, 8, 3))
    assert difference < 1e-5
    attention = pruned.get_layer("attention")
    assert [attention.get_layer(f"attention_{n}").units for n in "qkv"] == [4, 4, 4]
    assert attention.get_layer("attention_proj").kernel.shape == (4, 8)
    assert pruned.get_layer("mlp").get_layer("mlp_dw").kernel.shape[2] == 26
    path = tmp_path / "pruned.keras"
    pruned.save(path)  # plain layers and keras.ops: no custom objects
    sample = np.ones((1, 8, 8, 3), np.float32)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(sample, verbose=0), pruned.predict(sample, verbose=0), atol=1e-6)


def test_softmax_over_channels_is_never_pruned_through():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(6, 1, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(ops.softmax(x, axis=-1)))
    assert build_channel_graph(model).group_of_layer("conv").num_prunable == 0


@pytest.mark.parametrize("dropout", [0.0, 0.1], ids=["fused", "einsum"])  # keras runs dot_product_attention, or einsums
def test_keras_multi_head_attention_prunes_a_whole_head_exactly(dropout, tmp_path):
    inputs = keras.Input((16, 8))
    x = keras.layers.Dense(8, name="embed")(inputs)
    x = x + keras.layers.MultiHeadAttention(2, 4, dropout=dropout, name="mha")(x, x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(keras.layers.Dense(16, activation="gelu", name="fc1")(x)))
    randomize_weights(model)
    graph = build_channel_graph(model)
    heads = graph.group_of_layer("mha/query")
    assert heads.size == 2 and set(heads.producers) == {"query", "key", "value"}
    pruned, difference = _max_difference(graph, heads.classes[:1] + graph.group_of_layer("fc1").classes[:3], (16, 8))
    assert difference < 1e-5
    attention = pruned.get_layer("mha")
    assert [tuple(attention.get_layer(name).kernel.shape) for name in ("query", "attention_output")] == [(8, 1, 4), (1, 4, 8)]
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    sample = np.ones((1, 16, 8), np.float32)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(sample, verbose=0), pruned.predict(sample, verbose=0), atol=1e-6)
