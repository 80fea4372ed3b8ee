"""`Lambda` layers are traced into the keras ops they run, so squeeze-and-excitation written with Lambdas prunes
exactly, also once saved and loaded back with trust; a Lambda that cannot be traced is pinned with the reason."""

import json

import keras
import numpy as np
import pytest
from keras import layers

from segprune.graph import build_channel_graph
from segprune.graph.surgery import remove_channels
from segprune.models import load_model
from tests.graph.harness import assert_prunes_exactly, infer, randomize_weights, zeroed_copy


def squeeze(features):
    """Global average pooling as users write it in a Lambda (a named function: Keras reloads it by name)."""
    return keras.ops.mean(features, axis=(1, 2), keepdims=True)


def expand_dims(features, channels_axis):
    """A third-party Keras 2 library's SE block: GlobalAveragePooling2D, then this Lambda, then 1x1 convs."""
    return features[:, None, None, :] if channels_axis == 3 else features[:, :, None, None]


def _library_se_block(x, name):
    s = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    s = layers.Lambda(expand_dims, arguments={"channels_axis": 3}, name=f"{name}_expand_dims")(s)
    s = layers.Conv2D(4, 1, activation="relu", name=f"{name}_reduce")(s)
    s = layers.Conv2D(x.shape[-1], 1, activation="sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_excite")([x, s])


def _se_resnet(squeeze_function, size=16, shared_squeeze=False):
    """Two residual blocks with squeeze-and-excitation: squeeze and excite are Lambdas, the residual an Add (a
    `squeeze_function` of None: the third-party library's block)."""
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    reused = layers.Lambda(squeeze_function, name="squeeze") if shared_squeeze else None
    for block in range(2):
        y = layers.Conv2D(12, 3, padding="same", activation="relu", name=f"b{block}_conv1")(x)
        y = layers.Conv2D(8, 3, padding="same", name=f"b{block}_conv2")(y)
        if squeeze_function is None:
            y = _library_se_block(y, f"b{block}")
        else:
            s = (reused or layers.Lambda(squeeze_function, name=f"b{block}_squeeze"))(y)
            s = layers.Conv2D(4, 1, activation="relu", name=f"b{block}_reduce")(s)
            s = layers.Conv2D(8, 1, activation="sigmoid", name=f"b{block}_expand")(s)
            y = layers.Lambda(lambda pair: pair[0] * pair[1], name=f"b{block}_excite")([y, s])
        x = layers.ReLU()(layers.Add()([x, y]))
    return keras.Model(inputs, layers.Conv2D(2, 1, name="logits")(x))


def _assert_traced_exactly(model, size=16):
    graph = build_channel_graph(model)
    assert graph.pinned == []
    assert [graph.group_of_layer(f"b0_{name}").num_prunable for name in ("conv1", "reduce")] == [12, 4]
    assert graph.group_of_layer("b0_expand") is graph.group_of_layer("stem")  # excitation scales the residual stream
    sample = np.random.default_rng(0).random((2, size, size, 3)).astype(np.float32)
    np.testing.assert_allclose(infer(graph.model, sample), infer(model, sample), atol=1e-6)  # the traced graph is the model
    return assert_prunes_exactly(model, (size, size, 3))


def test_squeeze_excitation_lambdas_with_keras_ops_prune_exactly():
    pruned = _assert_traced_exactly(_se_resnet(lambda t: keras.ops.mean(t, axis=(1, 2), keepdims=True)))
    assert '"Lambda"' not in json.dumps(pruned.get_config(), default=str)


def test_one_lambda_called_in_two_blocks_prunes_exactly():
    _assert_traced_exactly(_se_resnet(squeeze, shared_squeeze=True))


def test_pruning_the_stream_a_two_tensor_lambda_multiplies_resizes_both_of_its_inputs():
    # The excite Lambda reads the residual stream and the gate: a nested model of two inputs once traced, whose
    # recorded input widths must both follow the pruned stream (the random groups above may leave the stream whole).
    model = _se_resnet(squeeze)
    randomize_weights(model)
    graph = build_channel_graph(model)
    removed = graph.group_of_layer("stem").classes[:3]
    pruned = remove_channels(graph, removed)
    assert [pruned.get_layer(name).filters for name in ("stem", "b0_expand", "b1_conv2")] == [5, 5, 5]
    sample = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(infer(pruned, sample), infer(zeroed_copy(graph, removed), sample), atol=1e-5)


def test_lambda_model_loaded_with_trust_prunes_exactly_and_saves_without_lambdas(tmp_path):
    path = tmp_path / "se_resnet.keras"
    _se_resnet(None).save(path)
    loaded = load_model(path, custom_objects={"expand_dims": expand_dims}, safe_mode=False)
    pruned = _assert_traced_exactly(loaded)
    pruned.save(tmp_path / "pruned.keras")
    reloaded = keras.saving.load_model(tmp_path / "pruned.keras")  # safe mode: no Lambda is left to trust
    sample = np.ones((1, 16, 16, 3), np.float32)
    np.testing.assert_allclose(infer(reloaded, sample), infer(pruned, sample), atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a Lambda written with TensorFlow ops")
def test_a_lambda_of_tensorflow_ops_is_pinned_with_the_reason_and_the_rest_prunes_exactly():
    import tensorflow as tf

    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="before")(layers.Conv2D(5, 1, name="first")(inputs))
    x = layers.Lambda(lambda t: tf.nn.relu(t) * 0.5, name="tf_relu")(x)
    model = keras.Model(inputs, layers.Conv2D(2, 1)(layers.Conv2D(4, 1, name="after")(x)))
    graph = build_channel_graph(model)
    [pin] = graph.pinned
    assert pin.name == "tf_relu" and pin.reason.startswith("its call could not be traced into keras ops") and "KerasTensor" in pin.reason
    assert [graph.group_of_layer(name).num_prunable for name in ("first", "before", "after")] == [5, 0, 4]
    pruned = assert_prunes_exactly(model, (8, 8, 3))
    assert isinstance(pruned.get_layer("tf_relu"), layers.Lambda)


def _attention_gate(channels_to_repeat=1, size=16):
    """A medical repo's attention gate: a sigmoid map repeated over the skip's channels by a Lambda, times the skip."""
    inputs = keras.Input((size, size, 3))
    skip = layers.Conv2D(8, 3, padding="same", name="skip")(inputs)
    psi = layers.Conv2D(channels_to_repeat, 1, activation="sigmoid", name="psi")(layers.Conv2D(4, 1, name="theta")(skip))
    gate = layers.Lambda(lambda x, repnum: keras.ops.repeat(x, repnum, axis=3), arguments={"repnum": 8 // channels_to_repeat})(psi)
    gated = layers.Multiply(name="gated")([gate, skip])
    return keras.Model(inputs, layers.Conv2D(2, 1, name="logits")(layers.Conv2D(6, 3, padding="same", name="after")(gated)))


def test_a_lambda_repeating_a_one_channel_gate_over_the_skip_prunes_the_skip_exactly():
    model = _attention_gate()
    graph = build_channel_graph(model)
    assert graph.pinned == [] and graph.group_of_layer("skip").num_prunable == 8
    randomize_weights(model)
    removed = graph.group_of_layer("skip").classes[:3]
    pruned = remove_channels(graph, removed)
    assert pruned.get_layer("skip").filters == 5 and pruned.get_layer("after").input.shape[-1] == 5
    sample = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(infer(pruned, sample), infer(zeroed_copy(graph, removed), sample), atol=1e-5)
    assert_prunes_exactly(model, (16, 16, 3))


def test_repeating_several_channels_along_the_channel_axis_is_pinned():
    graph = build_channel_graph(_attention_gate(channels_to_repeat=2))
    [pin] = graph.pinned
    assert "(Repeat) repeats 2 channels 4 times along the channel axis" in pin.reason
    assert graph.group_of_layer("skip").num_prunable == 0 and graph.group_of_layer("after").num_prunable == 6
