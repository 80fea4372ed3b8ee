"""A layer kind is one handler class and one registration: pruning, MACs and parameters all come from it."""

import math

import keras
import numpy as np
from keras import ops
from keras.src.applications.convnext import LayerScale, StochasticDepth
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from keras.src.ops import numpy as numpy_ops

from segprune import flops
from segprune.backend._keras_internals import trace_layer_calls
from segprune.cost.resources import macs_after
from segprune.graph import build_channel_graph, register_handler, registry, remove_channels
from segprune.graph.handlers import ChannelAxis, ChannelHandler
from tests.graph.harness import assert_prunes_exactly, choose_channels


@keras.saving.register_keras_serializable(package="segprune_tests")
class ChannelScale(keras.layers.Layer):
    """A learnt factor per channel: y[..., c] = x[..., c] * scale[c]."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer=keras.initializers.RandomUniform(0.5, 1.5, seed=1))

    def call(self, inputs):
        return inputs * self.scale


class ChannelScaleHandler(ChannelHandler):
    """Everything segprune needs to know about ChannelScale."""

    def couple(self, call, inputs, builder):
        return [list(inputs[0])]

    def channel_axes(self, call):
        return [ChannelAxis("scale", "input", 0, np.arange(call.input_shapes[0][-1]), "vector")]

    def macs(self, call):
        return math.prod(call.output_shapes[0][1:])  # one multiply per element


def _scaled_model() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="a")(inputs)
    x = keras.layers.ReLU()(ChannelScale(name="scale")(x))
    return keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same", name="b")(x))


def _conv_and_scale_macs(channels: int) -> int:
    return 64 * channels * 9 * 3 + 64 * channels + 64 * 4 * 9 * channels


def test_a_new_layer_kind_is_one_class_and_one_registration(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # this test's registration stays its own
    register_handler(ChannelScale, ChannelScaleHandler())
    model = _scaled_model()
    pruned = assert_prunes_exactly(model, (8, 8, 3))
    kept = pruned.get_layer("scale").weights[0].shape[0]
    assert kept < 6 and pruned.get_layer("a").filters == kept

    dense_cost, pruned_cost = flops(model, (8, 8)), flops(pruned, (8, 8))
    assert dense_cost.macs == _conv_and_scale_macs(6) and pruned_cost.macs == _conv_and_scale_macs(kept)
    assert [layer.params for layer in dense_cost.layers if layer.name == "scale"] == [6]
    assert pruned_cost.params == sum(math.prod(w.shape) for w in pruned.weights)

    graph = build_channel_graph(model)
    removed = choose_channels(graph)
    assert macs_after(graph, removed) == flops(remove_channels(graph, removed), (8, 8)).macs


IMAGE, TOKENS, HEADS = (6, 6, 4), (5, 8), (5, 2, 4)

# Per registered kind: the input it reads, a tiny use of it, and its MACs counted by hand (0: no weights multiplied).
EXAMPLES = {
    keras.layers.Conv2D: (IMAGE, lambda x: keras.layers.Conv2D(6, 3, padding="same")(x), 6 * 6 * 6 * 9 * 4),
    keras.layers.Conv1D: (TOKENS, lambda x: keras.layers.Conv1D(6, 3, padding="same")(x), 5 * 6 * 3 * 8),
    keras.layers.Dense: (TOKENS, lambda x: keras.layers.Dense(6)(x), 5 * 8 * 6),
    keras.layers.Conv2DTranspose: (IMAGE, lambda x: keras.layers.Conv2DTranspose(6, 2, strides=2)(x), 6 * 6 * 2 * 2 * 4 * 6),
    keras.layers.DepthwiseConv2D: (IMAGE, lambda x: keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x), 6 * 6 * 8 * 9),
    keras.layers.SeparableConv2D: (IMAGE, lambda x: keras.layers.SeparableConv2D(6, 3, padding="same")(x), 6 * 6 * 4 * 9 + 6 * 6 * 4 * 6),
    keras.layers.EinsumDense: (TOKENS, lambda x: keras.layers.EinsumDense("abc,cde->abde", (None, 2, 3), bias_axes="de")(x), 5 * 8 * 2 * 3),
    keras.layers.ReLU: (IMAGE, lambda x: keras.layers.ReLU()(x), 0),
    keras.layers.LeakyReLU: (IMAGE, lambda x: keras.layers.LeakyReLU()(x), 0),
    keras.layers.ELU: (IMAGE, lambda x: keras.layers.ELU()(x), 0),
    keras.layers.PReLU: (IMAGE, lambda x: keras.layers.PReLU()(x), 0),
    keras.layers.UpSampling2D: (IMAGE, lambda x: keras.layers.UpSampling2D()(x), 0),
    keras.layers.Resizing: (IMAGE, lambda x: keras.layers.Resizing(3, 3)(x), 0),
    keras.layers.ZeroPadding2D: (IMAGE, lambda x: keras.layers.ZeroPadding2D()(x), 0),
    keras.layers.Cropping2D: (IMAGE, lambda x: keras.layers.Cropping2D(1)(x), 0),
    keras.layers.Dropout: (IMAGE, lambda x: keras.layers.Dropout(0.1)(x), 0),
    keras.layers.SpatialDropout2D: (IMAGE, lambda x: keras.layers.SpatialDropout2D(0.1)(x), 0),
    keras.layers.GaussianNoise: (IMAGE, lambda x: keras.layers.GaussianNoise(0.1)(x), 0),
    keras.layers.GaussianDropout: (IMAGE, lambda x: keras.layers.GaussianDropout(0.1)(x), 0),
    keras.layers.AlphaDropout: (IMAGE, lambda x: keras.layers.AlphaDropout(0.1)(x), 0),
    keras.layers.Identity: (IMAGE, lambda x: keras.layers.Identity()(x), 0),
    keras.layers.Normalization: (IMAGE, lambda x: keras.layers.Normalization()(x), 0),
    keras.layers.Add: (IMAGE, lambda x: keras.layers.Add()([x, x]), 0),
    keras.layers.Subtract: (IMAGE, lambda x: keras.layers.Subtract()([x, x]), 0),
    keras.layers.Multiply: (IMAGE, lambda x: keras.layers.Multiply()([x, x]), 0),
    keras.layers.Average: (IMAGE, lambda x: keras.layers.Average()([x, x]), 0),
    keras.layers.Maximum: (IMAGE, lambda x: keras.layers.Maximum()([x, x]), 0),
    keras.layers.Minimum: (IMAGE, lambda x: keras.layers.Minimum()([x, x]), 0),
    keras.layers.Concatenate: (IMAGE, lambda x: keras.layers.Concatenate()([x, x]), 0),
    numpy_ops.Concatenate: (IMAGE, lambda x: ops.concatenate([x, x], axis=-1), 0),
    keras.layers.Rescaling: (IMAGE, lambda x: keras.layers.Rescaling(0.5)(x), 0),
    keras.layers.Reshape: (IMAGE, lambda x: keras.layers.Reshape((36, 4))(x), 0),
    keras.layers.Flatten: (IMAGE, lambda x: keras.layers.Flatten()(x), 0),
    keras.layers.Softmax: (IMAGE, lambda x: keras.layers.Softmax()(x), 0),
    keras.layers.Activation: (IMAGE, lambda x: keras.layers.Activation("relu")(x), 0),
    keras.layers.GroupNormalization: (IMAGE, lambda x: keras.layers.GroupNormalization(2)(x), 0),
    keras.layers.BatchNormalization: (IMAGE, lambda x: keras.layers.BatchNormalization()(x), 0),
    keras.layers.LayerNormalization: (IMAGE, lambda x: keras.layers.LayerNormalization()(x), 0),
    keras.layers.MaxPooling2D: (IMAGE, lambda x: keras.layers.MaxPooling2D()(x), 0),
    keras.layers.AveragePooling2D: (IMAGE, lambda x: keras.layers.AveragePooling2D(2)(x), 0),
    keras.layers.GlobalAveragePooling2D: (IMAGE, lambda x: keras.layers.GlobalAveragePooling2D()(x), 0),
    keras.layers.GlobalMaxPooling2D: (IMAGE, lambda x: keras.layers.GlobalMaxPooling2D()(x), 0),
    keras.layers.InputLayer: (IMAGE, lambda x: keras.layers.ReLU()(x), 0),
    numpy_ops.Add: (IMAGE, lambda x: x + x, 0),
    numpy_ops.Subtract: (IMAGE, lambda x: x - x, 0),
    numpy_ops.Multiply: (IMAGE, lambda x: x * x, 0),
    numpy_ops.Divide: (IMAGE, lambda x: ops.divide(x, x), 0),
    numpy_ops.TrueDivide: (IMAGE, lambda x: x / x, 0),
    numpy_ops.Maximum: (IMAGE, lambda x: ops.maximum(x, x), 0),
    numpy_ops.Minimum: (IMAGE, lambda x: ops.minimum(x, x), 0),
    numpy_ops.Power: (IMAGE, lambda x: ops.power(x, x), 0),
    CustomScaleLayer: (IMAGE, lambda x: CustomScaleLayer(0.5)([x, x]), 0),
    numpy_ops.Negative: (IMAGE, lambda x: ops.negative(x), 0),
    numpy_ops.Absolute: (IMAGE, lambda x: ops.absolute(x), 0),
    numpy_ops.Abs: (IMAGE, lambda x: numpy_ops.Abs()(x), 0),
    numpy_ops.Square: (IMAGE, lambda x: ops.square(x), 0),
    numpy_ops.Sqrt: (IMAGE, lambda x: ops.sqrt(x), 0),
    numpy_ops.Exp: (IMAGE, lambda x: ops.exp(x), 0),
    numpy_ops.Log: (IMAGE, lambda x: ops.log(x), 0),
    numpy_ops.Tanh: (IMAGE, lambda x: ops.tanh(x), 0),
    numpy_ops.Clip: (IMAGE, lambda x: ops.clip(x, 0.0, 1.0), 0),
    "Cast": (IMAGE, lambda x: ops.cast(x, "float32"), 0),
    "Resize": (IMAGE, lambda x: ops.image.resize(x, (3, 3)), 0),
    "Relu": (IMAGE, lambda x: ops.relu(x), 0),
    "Relu6": (IMAGE, lambda x: ops.relu6(x), 0),
    "Sigmoid": (IMAGE, lambda x: ops.sigmoid(x), 0),
    "Softplus": (IMAGE, lambda x: ops.softplus(x), 0),
    "Softsign": (IMAGE, lambda x: ops.softsign(x), 0),
    "Silu": (IMAGE, lambda x: ops.silu(x), 0),
    "LeakyRelu": (IMAGE, lambda x: ops.leaky_relu(x), 0),
    "HardSigmoid": (IMAGE, lambda x: ops.hard_sigmoid(x), 0),
    "HardSilu": (IMAGE, lambda x: ops.hard_silu(x), 0),
    "Elu": (IMAGE, lambda x: ops.elu(x), 0),
    "Selu": (IMAGE, lambda x: ops.selu(x), 0),
    "Gelu": (IMAGE, lambda x: ops.gelu(x), 0),
    "Celu": (IMAGE, lambda x: ops.celu(x), 0),
    LayerScale: (IMAGE, lambda x: LayerScale(0.1, 4)(x), 0),
    StochasticDepth: (IMAGE, lambda x: StochasticDepth(0.1)(x), 0),
    numpy_ops.Reshape: (IMAGE, lambda x: ops.reshape(x, (-1, 36, 4)), 0),
    numpy_ops.Transpose: (IMAGE, lambda x: ops.transpose(x, (0, 2, 1, 3)), 0),
    numpy_ops.Matmul: (TOKENS, lambda x: x @ ops.transpose(x, (0, 2, 1)), 5 * 5 * 8),  # tokens x tokens x width
    "Softmax": (IMAGE, lambda x: ops.softmax(x), 0),
    numpy_ops.Mean: (IMAGE, lambda x: ops.mean(x, axis=(1, 2)), 0),
    numpy_ops.Max: (IMAGE, lambda x: ops.max(x, axis=(1, 2)), 0),
    numpy_ops.Min: (IMAGE, lambda x: ops.min(x, axis=(1, 2)), 0),
    numpy_ops.Sum: (IMAGE, lambda x: ops.sum(x, axis=(1, 2)), 0),
    numpy_ops.GetItem: (IMAGE, lambda x: x[..., ::-1], 0),  # indexing that keeps the channel axis whole
    numpy_ops.Repeat: ((8, 8, 1), lambda x: ops.repeat(x, 4, axis=3), 0),  # an attention gate over 4 channels
    numpy_ops.ExpandDims: (TOKENS, lambda x: ops.expand_dims(x, 1), 0),
    numpy_ops.Split: (IMAGE, lambda x: ops.split(x, 2, axis=-1)[1], 0),
    numpy_ops.Pad: (IMAGE, lambda x: ops.pad(x, ((0, 0), (1, 1), (0, 1), (0, 0))), 0),
    "DotProductAttention": (HEADS, lambda x: ops.dot_product_attention(x, x, x), 2 * (2 * 5 * 5 * 4)),  # scores, then values
    numpy_ops.Einsum: (TOKENS, lambda x: ops.einsum("btd,bsd->bts", x, x), 5 * 5 * 8),
}


def _keras_hub_examples() -> dict:
    """keras-hub's vision transformer kinds, registered once keras_hub is imported: a 2x2 patch embedding of width 6."""
    try:
        from keras_hub.src.models.dinov2.dinov2_layers import DINOV2Embedding, DINOV2LayerScale
        from keras_hub.src.models.vit.vit_layers import ViTPatchingAndEmbedding
        from keras_hub.src.models.vit_det.vit_layers import AddPositionalEmbedding, ViTDetPatchingAndEmbedding
    except ImportError:
        return {}
    patches = 3 * 3 * 2 * 2 * 4 * 6
    return {
        ViTPatchingAndEmbedding: (IMAGE, lambda x: ViTPatchingAndEmbedding((6, 6), (2, 2), 6, num_channels=4)(x), patches),
        DINOV2Embedding: (IMAGE, lambda x: DINOV2Embedding(6, 2, (6, 6), num_register_tokens=1, position_embedding_shape=(6, 6))(x), patches),
        DINOV2LayerScale: (IMAGE, lambda x: DINOV2LayerScale(4)(x), 0),
        ViTDetPatchingAndEmbedding: (IMAGE, lambda x: ViTDetPatchingAndEmbedding((2, 2), (2, 2), 6)(x), patches),
        AddPositionalEmbedding: (IMAGE, lambda x: AddPositionalEmbedding(6, 1, 4)(x), 0),
    }


def _kind_of(key, kinds):
    """A class named by its keras.ops name ("Relu"), where a layer class shares it ("Softmax")."""
    if isinstance(key, type):
        return key
    return next(kind for kind in kinds if kind.__name__ == key and kind.__module__.startswith("keras.src.ops"))


def test_every_registered_kind_prices_macs_and_parameters_as_counted_directly():
    hub_examples = _keras_hub_examples()
    registry.register_known_layers()  # the third-party kinds, whether or not another test imported their package first
    kinds = registry.registered_kinds()
    examples = {_kind_of(key, kinds): example for key, example in {**EXAMPLES, **hub_examples}.items()}
    assert set(kinds) - set(examples) == set(), "a registered layer kind without an example here: add one with its MACs"
    for kind, (shape, build, expected_macs) in examples.items():
        inputs = keras.Input(shape)
        model = keras.Model(inputs, build(inputs))
        present = {type(call.layer) for call in trace_layer_calls(model, (1, *shape))} | {type(layer) for layer in model.layers}  # InputLayer is no call
        assert kind in present, kind
        report = flops(model, shape)
        assert report.macs == expected_macs, kind
        assert report.params == sum(math.prod(weight.shape) for weight in model.weights), kind



def test_attention_projections_cost_their_macs_before_and_after_a_head_goes():
    inputs = keras.Input((6, 8))
    model = keras.Model(inputs, keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")(inputs, inputs))
    projections = 3 * 6 * 8 * 2 * 4 + 6 * 2 * 4 * 8  # query, key, value (tokens x C x heads x size), then output
    projections += 2 * 2 * 6 * 6 * 4  # per head, queries x keys x size for the scores and again for the values
    assert flops(model, (6, 8)).macs == projections
    graph = build_channel_graph(model)
    heads = graph.group_of_layer("attention/query")
    assert heads.size == 2
    pruned = remove_channels(graph, [heads.classes[0]])
    assert flops(pruned, (6, 8)).macs == macs_after(graph, [heads.classes[0]]) == projections // 2
