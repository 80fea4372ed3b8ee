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

from segprune.backend._keras_internals import LayerCall, find_layer, run_with_hook
from segprune.graph.groups import ChannelGraph


def compensate_removed_channels(graph: ChannelGraph, pruned: keras.Model, removed: set[int], batches=None) -> int:
    """Moves the mean contribution of `removed` channels into the consumers of `pruned`; returns how many.

    Args:
        graph: The channel graph of the original model.
        pruned: The model `remove_channels(graph, removed)` built; its weights are updated in place.
        removed: The removed channel classes.
        batches: Optional iterable of (images, masks) to measure channel means on.
    """
    # The graph is read first (which consumer reads removed channels, from which producer, and where its shift goes),
    # then the producers' means are found and each consumer's response asked; the pruned model is edited last.
    producer_of = {tensor_id: index for index, call in enumerate(graph.trace.calls) for tensor_id in call.output_ids}
    removed_array = np.array(sorted(removed), dtype=np.int64)
    readers = _readers(graph, producer_of, removed_array)
    means = _batchnorm_means(graph, producer_of) if batches is None else _data_means(graph, batches)
    compensated = 0
    for index, dropped, source, (path, name, weight, sign) in readers:
        call = graph.trace.calls[index]
        response = graph.handler(call).mean_response(call) if source in means else None
        if response is None:
            continue
        shift = means[source][dropped] @ response[dropped]
        kept_shift = shift[~np.isin(graph.call_outputs[index][0], removed_array)]  # the consumer may have lost outputs too
        variable = getattr(find_layer(pruned, path, name), weight)
        variable.assign(keras.ops.convert_to_numpy(variable) + sign * kept_shift)
        compensated += 1
    return compensated


def _readers(graph: ChannelGraph, producer_of: dict[int, int], removed: np.ndarray) -> list[tuple[int, np.ndarray, int, tuple]]:
    """Every single-input consumer (first call of its layer) that reads removed channels and has somewhere to put the
    shift: (its call index, the input positions removed, its producer's call index, `_shift_target`)."""
    consumers_of: dict[int, list[int]] = {}
    for index, call in enumerate(graph.trace.calls):
        for tensor_id in call.input_ids:
            consumers_of.setdefault(tensor_id, []).append(index)
    readers, seen = [], set()
    for index, (call, inputs) in enumerate(zip(graph.trace.calls, graph.call_inputs)):
        if id(call.layer) in seen or len(call.input_ids) != 1:
            continue
        seen.add(id(call.layer))
        dropped = np.flatnonzero(np.isin(inputs[0], removed))
        source = producer_of.get(call.input_ids[0])
        target = _shift_target(graph, index, consumers_of)
        if dropped.size and source is not None and target is not None:
            readers.append((index, dropped, source, target))
    return readers


def _shift_target(graph: ChannelGraph, index: int, consumers_of: dict[int, list[int]]) -> tuple[tuple[str, ...], str, str, float] | None:
    """Where a consumer's shift goes: (path, layer name, weight, sign): its own bias, or else the moving mean of the
    BatchNorm right after it (taken off); None if neither exists."""
    call = graph.trace.calls[index]
    if getattr(call.layer, "use_bias", False):
        return call.path, call.layer.name, "bias", 1.0
    for consumer in consumers_of.get(call.output_ids[0], []):
        following = graph.trace.calls[consumer]
        if isinstance(following.layer, keras.layers.BatchNormalization):
            return following.path, following.layer.name, "moving_mean", -1.0
    return None


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
