"""The shared check for structural pruning: a pruned model must equal the original with those channels zeroed.

`assert_prunes_exactly(model, ...)` removes random channels from several groups, zeroes the same channels'
contribution in a copy of the original (every consumer's input weights for them), and compares outputs.
"""

from __future__ import annotations

import keras
import numpy as np

from segprune.backend._keras_internals import find_layer, placeholder_initial_values, rebuilt_copy
from segprune.graph.groups import ChannelGraph, build_channel_graph
from segprune.graph.handlers import weight_name
from segprune.graph.surgery import remove_channels


def randomize_weights(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and biases, so that a wrongly sliced vector shows in the output."""
    rng = np.random.default_rng(seed)
    for layer in _leaf_layers(model):
        values = []
        for variable in layer.weights:
            value = keras.ops.convert_to_numpy(variable)
            name = weight_name(variable)
            if name in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 1.5, value.shape)
            elif name in ("beta", "moving_mean", "bias"):
                value = rng.normal(0.0, 0.1, value.shape)
            values.append(value.astype(np.float32))
        layer.set_weights(values)


def randomize_position_tables(model: keras.Model, seed: int = 1) -> None:
    """ViTDet's relative position tables and position embedding drawn at random (keras-hub starts them at zero, which
    would hide a wrongly sliced or gathered table)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        for variable in layer.weights:
            if variable.path.rsplit("/", 1)[-1] in ("rel_pos_h", "rel_pos_w", "pos_embed"):
                variable.assign(rng.normal(0.0, 0.5, variable.shape).astype(np.float32))


def built_with_numpy_weights(build, seed: int = 0) -> keras.Model:
    """`build()` with its randomly initialised weights drawn by NumPy (Glorot uniform) instead of by Keras.

    Under JAX, Keras compiles a random kernel per weight shape (most of a small model's build time); the
    checks here need random weights, not Keras's own draws.
    """
    rng = np.random.default_rng(seed)
    with placeholder_initial_values():
        model = build()
    for layer in _leaf_layers(model):
        values = []
        for variable in layer.weights:
            value = keras.ops.convert_to_numpy(variable)
            if value.ndim >= 2 and value.dtype.kind == "f" and not value.any():
                receptive = int(np.prod(value.shape[:-2]))
                limit = np.sqrt(6.0 / (receptive * (value.shape[-2] + value.shape[-1])))
                value = rng.uniform(-limit, limit, value.shape).astype(value.dtype)
            values.append(value)
        layer.set_weights(values)
    return model


def choose_channels(graph: ChannelGraph, seed: int = 0, share_of_groups: float = 0.5, share_of_channels: float = 0.4) -> list[int]:
    """Random prunable channels from a random share of the prunable groups."""
    rng = np.random.default_rng(seed)
    groups = graph.prunable_groups()
    picked = rng.choice(len(groups), size=max(1, int(round(share_of_groups * len(groups)))), replace=False)
    removed = []
    for index in picked:
        group = groups[index]
        candidates = np.flatnonzero(group.prunable)
        count = min(len(candidates), max(1, int(share_of_channels * group.size)))
        if count >= group.size:
            count = group.size - 1
        removed += [group.classes[i] for i in rng.choice(candidates, size=count, replace=False)]
    return removed


def zeroed_copy(graph: ChannelGraph, removed: list[int]) -> keras.Model:
    """A copy of the original in which every consumer ignores the removed channels (input weights zeroed)."""
    model = graph.model
    copy = rebuilt_copy(model)
    removed_array = np.array(removed)
    for call, inputs in zip(graph.trace.calls, graph.call_inputs):
        zeroed = {}
        for channel_axis in graph.handler(call).channel_axes(call):
            if channel_axis.side != "input" or channel_axis.kind != "kernel":
                continue
            classes = inputs[channel_axis.tensor][channel_axis.positions]
            zeroed.setdefault(channel_axis.weight, []).append((channel_axis.axis, np.flatnonzero(np.isin(classes, removed_array))))
        if not any(entries.size for axes in zeroed.values() for _, entries in axes):
            continue
        target = find_layer(copy, call.path, call.layer.name)
        values = []
        for variable in target.weights:
            value = keras.ops.convert_to_numpy(variable).copy()
            for axis, entries in zeroed.get(weight_name(variable), []):
                index = [slice(None)] * value.ndim
                index[axis] = entries
                value[tuple(index)] = 0
            values.append(value)
        target.set_weights(values)
    return copy


def infer(model: keras.Model, sample: np.ndarray):
    """The model's inference outputs as numpy, called directly: `predict` compiles a fresh step function per
    model. Under JAX the forward pass is one jitted function per architecture (shared by the original, its
    zeroed copy and a reloaded copy, which have the same config); eagerly, XLA compiled every operation of
    every new shape on its own (~550 compilations, 20 s, for one MobileNetV2-U-Net check)."""
    if keras.backend.backend() == "jax":
        outputs = _jitted_forward(model)(
            [variable.value for variable in model.trainable_variables], [variable.value for variable in model.non_trainable_variables], sample
        )
    else:
        outputs = model(sample, training=False)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


_FORWARDS: dict[str, object] = {}


def _jitted_forward(model: keras.Model):
    import json

    import jax

    key = json.dumps(model.get_config(), sort_keys=True, default=str)
    if key not in _FORWARDS:
        if len(_FORWARDS) >= 8:
            _FORWARDS.pop(next(iter(_FORWARDS)))
        _FORWARDS[key] = jax.jit(lambda trainable, non_trainable, x: model.stateless_call(trainable, non_trainable, x, training=False)[0])
    return _FORWARDS[key]


def assert_prunes_exactly(model: keras.Model, input_shape: tuple[int, ...], seed: int = 0, atol: float = 1e-5) -> keras.Model:
    """Prunes random channels of `model` and checks outputs against the zeroed original; returns the pruned model."""
    randomize_weights(model, seed)
    graph = build_channel_graph(model)
    removed = choose_channels(graph, seed)
    assert removed, "the model has no prunable channels"
    pruned = remove_channels(graph, removed)
    reference = zeroed_copy(graph, removed)
    sample = np.random.default_rng(seed).random((2, *input_shape)).astype(np.float32)
    expected, actual = infer(reference, sample), infer(pruned, sample)
    assert actual.shape == expected.shape == infer(model, sample).shape
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)
    assert pruned.count_params() < model.count_params()
    return pruned


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer
