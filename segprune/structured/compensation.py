"""Bias compensation: a removed channel's average contribution moves into its consumers' biases.

A pruned channel rarely carries nothing. After BatchNorm and ReLU a channel with a small scale but a
positive shift is nearly constant, and its consumers use it as a bias; removing it shifts every consumer's
output, the BatchNorm statistics downstream no longer match, and a one-shot pruned U-Net can drop to Dice
0 (seen on the synthetic data when the channels before the head went by BN scale). Adding each removed
channel's mean contribution to the consumer's bias (or, for a bias-free conv followed by BatchNorm, taking
it off that BatchNorm's moving mean) keeps the expected outputs where they were.

Channel means come from data when given (mean activation over a few training batches) and otherwise
from BatchNorm statistics alone: a BatchNorm output has mean beta, and ReLU(N(beta, gamma^2)) has mean
beta * Phi(beta / |gamma|) + |gamma| * phi(beta / |gamma|).
"""

from __future__ import annotations

import keras
import numpy as np
from scipy.stats import norm

from segprune.backend._keras_internals import LayerCall, run_with_hook
from segprune.graph.groups import ChannelGraph
from segprune.graph.surgery import find_layer


def compensate_removed_channels(graph: ChannelGraph, pruned: keras.Model, removed: set[int], batches=None) -> int:
    """Moves the mean contribution of `removed` channels into the consumers of `pruned`; returns how many.

    Args:
        graph: The channel graph of the original model.
        pruned: The model `remove_channels(graph, removed)` built; its weights are updated in place.
        removed: The removed channel classes.
        batches: Optional iterable of (images, masks) to measure channel means on.
    """
    producer_of = {tensor_id: index for index, call in enumerate(graph.trace.calls) for tensor_id in call.output_ids}
    means = _data_means(graph, batches) if batches is not None else _batchnorm_means(graph, producer_of)
    consumers_of: dict[int, list[int]] = {}
    for index, call in enumerate(graph.trace.calls):
        for tensor_id in call.input_ids:
            consumers_of.setdefault(tensor_id, []).append(index)
    removed_array = np.array(sorted(removed), dtype=np.int64)
    seen, compensated = set(), 0
    for index, (call, inputs) in enumerate(zip(graph.trace.calls, graph.call_inputs)):
        if id(call.layer) in seen or len(call.input_ids) != 1:
            continue
        seen.add(id(call.layer))
        dropped = np.flatnonzero(np.isin(inputs[0], removed_array))
        source = producer_of.get(call.input_ids[0])
        if dropped.size == 0 or source is None or source not in means:
            continue
        response = graph.handler(call).mean_response(call)
        if response is None:
            continue
        shift = means[source][dropped] @ response[dropped]
        if _apply(pruned, graph, index, shift, consumers_of, removed_array):
            compensated += 1
    return compensated


def _apply(pruned: keras.Model, graph: ChannelGraph, index: int, shift: np.ndarray, consumers_of, removed: np.ndarray) -> bool:
    """Adds the shift to the pruned consumer's bias, or takes it off the BatchNorm right after it."""
    call = graph.trace.calls[index]
    kept_shift = shift[~np.isin(graph.call_outputs[index][0], removed)]  # the consumer may have lost outputs too
    layer = find_layer(pruned, call.path, call.layer.name)
    if getattr(layer, "use_bias", False):
        layer.bias.assign(keras.ops.convert_to_numpy(layer.bias) + kept_shift)
        return True
    for consumer in consumers_of.get(call.output_ids[0], []):
        following = graph.trace.calls[consumer]
        if isinstance(following.layer, keras.layers.BatchNormalization):
            norm_layer = find_layer(pruned, following.path, following.layer.name)
            norm_layer.moving_mean.assign(keras.ops.convert_to_numpy(norm_layer.moving_mean) - kept_shift)
            return True
    return False


def _batchnorm_means(graph: ChannelGraph, producer_of: dict[int, int]) -> dict[int, np.ndarray]:
    """Per call index: the mean of each output channel, where BatchNorm statistics determine it."""
    means: dict[int, np.ndarray] = {}
    for index, call in enumerate(graph.trace.calls):
        layer = call.layer
        if isinstance(layer, keras.layers.BatchNormalization) and layer.center:
            means[index] = keras.ops.convert_to_numpy(layer.beta)
        elif _is_relu(layer) and call.input_ids and producer_of.get(call.input_ids[0]) in means:
            source = graph.trace.calls[producer_of[call.input_ids[0]]].layer
            beta = keras.ops.convert_to_numpy(source.beta)
            gamma = np.abs(keras.ops.convert_to_numpy(source.gamma)) if source.scale else np.ones_like(beta)
            ratio = beta / np.maximum(gamma, 1e-12)
            means[index] = beta * norm.cdf(ratio) + gamma * norm.pdf(ratio)
    return means


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return layer.max_value is None and not layer.negative_slope and not layer.threshold
    return isinstance(layer, keras.layers.Activation) and getattr(layer.activation, "__name__", "") == "relu"


def _data_means(graph: ChannelGraph, batches) -> dict[int, np.ndarray]:
    """Per call index: the mean of each output channel over the batches."""
    index_of = {(call.path, call.layer.name): index for index, call in reversed(list(enumerate(graph.trace.calls)))}
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for images, _ in batches:

        def hook(call: LayerCall, outputs) -> None:
            index = index_of.get((call.path, call.layer.name))
            if index is None or not outputs or len(outputs[0].shape) < 2:
                return
            values = keras.ops.convert_to_numpy(outputs[0])
            sums[index] = sums.get(index, 0) + values.reshape(-1, values.shape[-1]).mean(axis=0)
            counts[index] = counts.get(index, 0) + 1

        run_with_hook(graph.model, images, hook)
    return {index: total / counts[index] for index, total in sums.items()}
