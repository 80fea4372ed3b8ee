"""Rebuilding a smaller model: edited layer configs, sliced weights, nothing patched in place."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import keras
import numpy as np

from segprune.backend._keras_internals import all_sublayers, find_layer, leaf_layers, rebuild_from_config
from segprune.graph.groups import ChannelGraph
from segprune.graph.handlers import UnsupportedLayerError, layer_weights


def remove_channels(graph: ChannelGraph, removed_classes: Iterable[int]) -> keras.Model:
    """A new model without the given channel classes; the original model is left untouched.

    The new model is built from the original's config with each affected layer's width edited, then
    every layer receives its original weights sliced to the kept channels; pinned layers (`graph.pinned`) keep
    their config and weights as they are. It is a plain Keras model: it
    saves as `.keras` and loads without custom objects.

    Args:
        graph: The channel graph of the model to shrink.
        removed_classes: Channel-class ids to remove; each must be prunable.

    Raises:
        ValueError: A class is unknown or not prunable, or removal would empty a group.

    Example:
        >>> graph = build_channel_graph(model)
        >>> smaller = remove_channels(graph, graph.prunable_groups()[0].classes[:8])
    """
    removed = _validated(graph, removed_classes)
    kept_by_layer = kept_positions(graph, removed)
    config = copy.deepcopy(_model_config(graph.model))
    _drop_build_configs(config)
    for call, (kept_in, kept_out) in kept_by_layer.values():
        layer_config = _find_layer_config(config, call.path, call.layer.name)
        layer_config["config"] = graph.handler(call).edit_call_config(call, layer_config["config"], kept_in, kept_out)
    for path, widths in _nested_input_widths(graph, removed).items():
        _resize_nested_input(_find_layer_config(config, path[:-1], path[-1])["config"], widths)
    rebuilt = _rebuild(graph.model, config)
    for call, (kept_in, kept_out) in kept_by_layer.values():
        if layer_weights(call.layer):
            target = find_layer(rebuilt, call.path, call.layer.name)
            target.set_weights(graph.handler(call).slice_weights(call, kept_in, kept_out))
    for path, layer in leaf_layers(graph.model):  # a layer the trace never called keeps its weights whole
        if (path, layer.name) not in kept_by_layer and layer.weights:
            find_layer(rebuilt, path, layer.name).set_weights(layer.get_weights())
    return rebuilt


def _model_config(model: keras.Model) -> dict:
    try:
        return model.get_config()
    except Exception as error:  # a layer whose get_config() fails; name the innermost
        failing = [layer for layer in all_sublayers(model) if not _writes_config(layer)]
        for layer in failing:
            if not any(inner in failing for inner in all_sublayers(layer)):
                raise UnsupportedLayerError(
                    f"Layer {layer.name!r} ({type(layer).__module__}.{type(layer).__name__}) cannot write its config "
                    f"({type(error).__name__}), so a smaller copy of model {model.name!r} cannot be rebuilt (segprune rebuilds "
                    "from the config). Give the layer a get_config() that returns its constructor's arguments."
                ) from error
        raise UnsupportedLayerError(f"Keras could not write the config of model {model.name!r}: {type(error).__name__}: {error}") from error


def _writes_config(layer: keras.layers.Layer) -> bool:
    try:
        layer.get_config()
    except Exception:  # Keras raises NotImplementedError, TypeError, ... for the same reason
        return False
    return True


def _rebuild(model: keras.Model, config: dict) -> keras.Model:
    """The model `config` describes; its weights start as placeholders, as `remove_channels` assigns each one."""
    try:
        return rebuild_from_config(model, config)
    except Exception as error:  # Keras raises many types here; to the user they all mean one thing
        raise UnsupportedLayerError(
            f"Keras could not rebuild model {model.name!r} with its pruned widths: {type(error).__name__}: {error}. "
            "A layer whose get_config() does not describe its channels (or that fixes its width in its "
            "constructor) needs its own handler: segprune.graph.register_handler(TheLayer, handler) with an "
            "edit_config that writes the new width; or keep its channels with ignore=[...]."
        ) from error


def _validated(graph: ChannelGraph, removed_classes: Iterable[int]) -> set[int]:
    removed = {int(c) for c in removed_classes}
    per_group: dict[int, int] = {}
    for class_id in removed:
        group = graph.group_of_class(class_id)
        if not group.prunable[group.classes.index(class_id)]:
            raise ValueError(f"Channel class {class_id} of group {group.index} ({', '.join(group.producers)}) may not be removed.")
        per_group[group.index] = per_group.get(group.index, 0) + 1
    for index, count in per_group.items():
        group = graph.groups[index]
        if count >= group.size:
            raise ValueError(f"Removing all {count} channels of group {index} ({', '.join(group.producers)}) would cut the model.")
        if (group.size - count) % group.multiple_of:
            raise ValueError(
                f"Group {index} ({', '.join(group.producers)}) must keep a multiple of {group.multiple_of} channels "
                f"(GroupNormalization); removing {count} of {group.size} leaves {group.size - count}."
            )
    return removed


def kept_positions(graph: ChannelGraph, removed: Iterable[int]):
    """Per layer (first call; shared layers keep the same channels on every call): kept input/output positions.

    Returns:
        {(path, name): (call, (kept input positions per input, kept output positions per output))}.
    """
    kept = {}
    removed_array = np.array(sorted(set(removed)), dtype=np.int64)
    for call, inputs, outputs in zip(graph.trace.calls, graph.call_inputs, graph.call_outputs):
        key = (call.path, call.layer.name)
        if key in kept:
            continue
        kept_in = [np.flatnonzero(~np.isin(classes, removed_array)) for classes in inputs]
        kept_out = [np.flatnonzero(~np.isin(classes, removed_array)) for classes in outputs]
        kept[key] = (call, (kept_in, kept_out))
    return kept


def _nested_input_widths(graph: ChannelGraph, removed: set[int]) -> dict[tuple[str, ...], tuple[int | None, ...]]:
    """Per nested model (by path): the channel count each of its inputs keeps (None: an input no layer reads),
    where all its calls agree."""
    removed_array = np.array(sorted(removed), dtype=np.int64)
    classes_of = {tensor_id: classes for call, inputs in zip(graph.trace.calls, graph.call_inputs) for tensor_id, classes in zip(call.input_ids, inputs)}
    widths: dict[tuple[str, ...], set[tuple[int | None, ...]]] = {}
    for path, input_ids in graph.trace.nested_inputs:
        kept = tuple(
            int(np.count_nonzero(~np.isin(classes_of[tensor_id], removed_array))) if tensor_id in classes_of else None for tensor_id in input_ids
        )
        widths.setdefault(path, set()).add(kept)
    return {path: next(iter(kept)) for path, kept in widths.items() if len(kept) == 1}


def _resize_nested_input(model_config: dict, widths: tuple[int | None, ...]) -> None:
    """A nested model's recorded input shapes follow its pruned inputs (ConvNeXt's downsampling Sequentials, a
    traced `Lambda` multiplying two tensors)."""
    input_layers = {entry["config"]["name"]: entry for entry in model_config.get("layers", []) if entry.get("class_name") == "InputLayer"}
    references = model_config.get("input_layers")
    if isinstance(references, list) and references and isinstance(references[0], list):
        names = [reference[0] for reference in references]
    elif isinstance(references, list) and references:
        names = [references[0]]
    elif isinstance(references, dict):  # inputs by key, which the trace flattens in sorted key order
        names = [references[key][0] for key in sorted(references)]
    else:  # a Sequential: its one InputLayer, if it has one
        names = list(input_layers)
    if len(widths) == 1 and widths[0] is not None and model_config.get("build_input_shape"):
        model_config["build_input_shape"] = [*model_config["build_input_shape"][:-1], widths[0]]
    for name, width in zip(names, widths) if len(names) == len(widths) else ():
        entry = input_layers.get(name)
        if width is not None and entry is not None and entry["config"].get("batch_shape"):
            entry["config"]["batch_shape"] = [*entry["config"]["batch_shape"][:-1], width]


def _drop_build_configs(model_config: dict) -> None:
    """Layers must build from the shapes they are now called with, not the widths recorded before pruning."""
    for entry in model_config.get("layers", []):
        entry.pop("build_config", None)
        if "layers" in entry.get("config", {}):
            _drop_build_configs(entry["config"])


def _find_layer_config(model_config: dict, path: tuple[str, ...], name: str) -> dict:
    config = model_config
    for nested in path:
        config = _layer_entry(config, nested)["config"]
    return _layer_entry(config, name)


def _layer_entry(model_config: dict, name: str) -> dict:
    for entry in model_config.get("layers", []):
        if entry["config"].get("name") == name or entry.get("name") == name:
            return entry
    raise UnsupportedLayerError(
        f"Layer {name!r} is not in the config of model {model_config.get('name')!r}: a model whose get_config() "
        "does not list its layers cannot be rebuilt smaller. Build it functionally with keras.Model(inputs, outputs)."
    )
