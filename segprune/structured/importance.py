"""Importance criteria: a score for every channel class, aggregated over all layers of its group.

Each criterion yields per-layer score vectors (one entry per channel position a layer reads or writes).
Every vector is divided by its own mean, so that layers of different scale weigh alike, and the scores of
all positions that belong to one channel class are averaged. Higher means more important.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import keras
import numpy as np

from segprune.backend._keras_internals import LayerCall, run_with_hook
from segprune.backend.gradients import loss_gradients
from segprune.data.dataset import SegmentationDataset
from segprune.data.pipeline import BatchConfig, TrainingBatches
from segprune.graph.groups import ChannelGraph
from segprune.graph.handlers import ChannelAxis, layer_weights, weight_name
from segprune.graph.registry import handler_for
from segprune.inference import fixed_input_size, input_channels

CRITERIA = ("l1", "l2", "bn-scale", "taylor", "activation", "random", "mutual-info")
DATA_CRITERIA = ("taylor", "activation", "mutual-info")

Scores = dict[int, float]  # channel class -> importance


class ScoreAccumulator:
    """Collects per-layer score vectors and averages them per channel class."""

    def __init__(self) -> None:
        self.total: dict[int, float] = {}
        self.count: dict[int, int] = {}

    def add(self, classes: np.ndarray, scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float64)
        mean = scores.mean()
        if not np.isfinite(mean) or mean <= 0:
            return
        scores = scores / mean
        for class_id, score in zip(classes.tolist(), scores.tolist()):
            self.total[class_id] = self.total.get(class_id, 0.0) + score
            self.count[class_id] = self.count.get(class_id, 0) + 1

    def result(self) -> Scores:
        return {class_id: self.total[class_id] / self.count[class_id] for class_id in self.total}


def channel_importance(
    graph: ChannelGraph,
    criterion: str = "l1",
    data: SegmentationDataset | None = None,
    num_batches: int = 4,
    seed: int = 0,
) -> Scores:
    """Scores every channel class of `graph` by `criterion`.

    Args:
        graph: The channel graph of the model.
        criterion: `"l1"`, `"l2"` (filter norms, producers and consumers alike), `"bn-scale"` (|gamma| of
            BatchNorm, network slimming; groups without BatchNorm fall back to L1), `"taylor"` (first-order
            Taylor |w * dL/dw| summed per channel), `"activation"` (mean |activation|), `"random"`, or
            `"mutual-info"` (mutual information between a channel's activation and the mask).
        data: Needed by the data-driven criteria (taylor, activation, mutual-info).
        num_batches: Batches of training patches the data-driven criteria look at.
        seed: Seed of `"random"` and of the data sample.

    Example:
        >>> scores = channel_importance(build_channel_graph(model), "l1")
    """
    if criterion not in CRITERIA:
        raise ValueError(f"Unknown importance {criterion!r}; choose one of {list(CRITERIA)}.")
    if criterion in DATA_CRITERIA and data is None:
        raise ValueError(f"Importance {criterion!r} needs data (pass data=..., or --data on the command line).")
    if criterion == "random":
        rng = np.random.default_rng(seed)
        return {class_id: float(rng.random()) for group in graph.groups for class_id in group.classes}
    if criterion in ("l1", "l2"):
        return weight_norm_scores(graph, order=1 if criterion == "l1" else 2)
    if criterion == "bn-scale":
        return _bn_scale_scores(graph)
    batches = list(sample_batches(graph.model, data, num_batches, seed))
    if criterion == "taylor":
        return _taylor_scores(graph, batches).result()
    if criterion == "activation":
        return _activation_scores(graph, batches, _mean_absolute).result()
    return _activation_scores(graph, batches, _mutual_information).result()


def weight_norm_scores(graph: ChannelGraph, order: int = 1) -> Scores:
    """The `"l1"` (order 1) or `"l2"` (order 2) criterion: norms of each producer's filters and each consumer's input
    slices, for a caller that needs no other criterion.

    Example:
        >>> scores = weight_norm_scores(build_channel_graph(model), order=1)
    """
    return _weight_norm_scores(graph, order).result()


def _weight_norm_scores(graph: ChannelGraph, order: int, weights_of: Callable | None = None) -> ScoreAccumulator:
    """Norms of each producer's filters (output side) and each consumer's input slices."""
    accumulator = ScoreAccumulator()
    seen = set()
    for call, inputs, outputs in zip(graph.trace.calls, graph.call_inputs, graph.call_outputs):
        if id(call.layer) in seen or not layer_weights(call.layer) or graph.is_pinned(call.layer):  # a pinned layer's channels all stay
            continue
        seen.add(id(call.layer))
        weights = weights_of(call) if weights_of else {weight_name(v): keras.ops.convert_to_numpy(v) for v in layer_weights(call.layer)}
        for classes, channel_axis in _kernel_slices(call, inputs, outputs):
            accumulator.add(*_norms_per_channel(classes, weights[channel_axis.weight], channel_axis, order))
    return accumulator


def _kernel_slices(call: LayerCall, inputs, outputs) -> Iterator[tuple[np.ndarray, ChannelAxis]]:
    """(channel classes of the tensor, axis) for every channel axis of every kernel of a layer."""
    for channel_axis in handler_for(call.layer).channel_axes(call):
        if channel_axis.kind == "kernel":
            tensors = inputs if channel_axis.side == "input" else outputs
            yield tensors[channel_axis.tensor], channel_axis


def _norms_per_channel(classes: np.ndarray, kernel: np.ndarray, channel_axis: ChannelAxis, order: int) -> tuple[np.ndarray, np.ndarray]:
    """The norm of each channel's filter (every entry the axis holds for that channel): (classes, norms)."""
    moved = np.moveaxis(np.abs(kernel), channel_axis.axis, 0).reshape(kernel.shape[channel_axis.axis], -1)
    powers = (moved**order).sum(axis=1)
    positions = np.unique(channel_axis.positions)
    per_position = np.zeros(len(classes), dtype=np.float64)
    np.add.at(per_position, channel_axis.positions, powers)
    return classes[positions], per_position[positions] ** (1.0 / order)


def _bn_scale_scores(graph: ChannelGraph) -> Scores:
    accumulator = ScoreAccumulator()
    seen = set()
    for call, inputs in zip(graph.trace.calls, graph.call_inputs):
        if isinstance(call.layer, keras.layers.BatchNormalization) and call.layer.scale and id(call.layer) not in seen:
            seen.add(id(call.layer))
            accumulator.add(inputs[0], np.abs(keras.ops.convert_to_numpy(call.layer.gamma)))
    scores = accumulator.result()
    fallback = _weight_norm_scores(graph, order=1).result()
    for group in graph.groups:
        if not any(class_id in scores for class_id in group.classes):
            scores.update({class_id: fallback.get(class_id, 0.0) for class_id in group.classes})
    return scores


def sample_batches(model: keras.Model, data: SegmentationDataset, num_batches: int, seed: int):
    """`num_batches` batches of 4 un-augmented 128x128 training patches (of its size for a model built for one),
    adapted to the model's input."""
    config = BatchConfig(batch_size=4, image_size=128, augment=False, samples_per_epoch=4 * num_batches, seed=seed)
    channels, patch = input_channels(model), fixed_input_size(model)
    batches = TrainingBatches(data, "train", channels, config, workers=1, patch=patch)
    for index in range(len(batches)):
        yield batches[index]


def _taylor_scores(graph: ChannelGraph, batches) -> ScoreAccumulator:
    """|w * dL/dw| accumulated over the batches, then summed per channel like a weight norm."""
    from segprune.losses import CrossEntropyDiceLoss
    from segprune.models.outputs import output_kind

    model = graph.model
    loss = CrossEntropyDiceLoss(output_kind(model))
    totals = {id(v): np.zeros(v.shape, dtype=np.float64) for v in model.trainable_weights}
    for images, masks in batches:
        for variable, gradient in zip(model.trainable_weights, loss_gradients(model, loss, images, masks)):
            totals[id(variable)] += np.abs(keras.ops.convert_to_numpy(variable) * gradient)

    def saliency(call: LayerCall) -> dict[str, np.ndarray]:
        return {weight_name(v): totals.get(id(v), np.zeros(v.shape)) for v in layer_weights(call.layer)}

    return _weight_norm_scores(graph, order=1, weights_of=saliency)


def _activation_scores(graph: ChannelGraph, batches, statistic: Callable) -> ScoreAccumulator:
    """Scores each channel class on the last tensor that carries it (what its consumers actually read).

    `statistic(features, labels)` gets (pixels, channels) activations sampled over all batches with the
    mask class of each pixel, and returns one score per channel.
    """
    chosen = _last_tensor_positions(graph)
    features: dict[tuple, list[np.ndarray]] = {key: [] for key in chosen}
    labels: dict[tuple, list[np.ndarray]] = {key: [] for key in chosen}
    rng = np.random.default_rng(0)
    for images, masks in batches:

        def hook(call: LayerCall, outputs, masks=masks) -> None:
            key = (call.path, call.layer.name)
            if key not in chosen or not outputs or len(outputs[0].shape) != 4:
                return
            positions, _ = chosen[key]
            activations = keras.ops.convert_to_numpy(outputs[0])[..., positions]
            sampled, sampled_labels = _sample_pixels(activations, masks, rng)
            features[key].append(sampled)
            labels[key].append(sampled_labels)

        run_with_hook(graph.model, images, hook)
    accumulator = ScoreAccumulator()
    for key, (_, classes) in chosen.items():
        if features[key]:
            accumulator.add(classes, statistic(np.concatenate(features[key]), np.concatenate(labels[key])))
    return accumulator


def _last_tensor_positions(graph: ChannelGraph) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """For each layer output: the positions whose class is carried by no later layer output, and their classes."""
    latest: dict[int, tuple[tuple, int]] = {}
    for call, outputs in zip(graph.trace.calls, graph.call_outputs):
        if outputs:
            for position, class_id in enumerate(outputs[0].tolist()):
                latest[class_id] = ((call.path, call.layer.name), position)
    chosen: dict[tuple, list[tuple[int, int]]] = {}
    for class_id, (key, position) in latest.items():
        chosen.setdefault(key, []).append((position, class_id))
    return {key: (np.array([p for p, _ in pairs]), np.array([c for _, c in pairs])) for key, pairs in chosen.items()}


def _sample_pixels(activations: np.ndarray, masks: np.ndarray, rng: np.random.Generator, count: int = 256):
    """`count` random pixels of (batch, H, W, C) activations, with the mask class under each."""
    batch, height, width, channels = activations.shape
    rows = rng.integers(0, height, count)
    cols = rng.integers(0, width, count)
    items = rng.integers(0, batch, count)
    scale_rows, scale_cols = masks.shape[1] / height, masks.shape[2] / width
    mask_rows = np.minimum((rows * scale_rows).astype(int), masks.shape[1] - 1)
    mask_cols = np.minimum((cols * scale_cols).astype(int), masks.shape[2] - 1)
    return activations[items, rows, cols], masks[items, mask_rows, mask_cols]


def _mean_absolute(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.abs(features).mean(axis=0)


def _mutual_information(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from sklearn.feature_selection import mutual_info_classif

    if len(np.unique(labels)) < 2:
        return np.ones(features.shape[1])
    return mutual_info_classif(features, labels, discrete_features=False, random_state=0) + 1e-6
