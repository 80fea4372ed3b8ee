"""Rebuilding a smaller model: edited layer configs, sliced weights, nothing patched in place."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import keras
import numpy as np

from segprune.graph.channels import handler_for, layer_weights
from segprune.graph.groups import ChannelGraph


def remove_channels(graph: ChannelGraph, removed_classes: Iterable[int]) -> keras.Model:
    """A new model without the given channel classes; the original model is left untouched.

    The new model is built from the original's config with each affected layer's width edited, then
    every layer receives its original weights sliced to the kept channels. It is a plain Keras model: it
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
    config = copy.deepcopy(graph.model.get_config())
    _drop_build_configs(config)
    for call, (kept_in, kept_out) in kept_by_layer.values():
        layer_config = _find_layer_config(config, call.path, call.layer.name)
        layer_config["config"] = handler_for(call.layer).edit_config(layer_config["config"], kept_in, kept_out)
    rebuilt = type(graph.model).from_config(config)
    for call, (kept_in, kept_out) in kept_by_layer.values():
        if layer_weights(call.layer):
            target = find_layer(rebuilt, call.path, call.layer.name)
            target.set_weights(handler_for(call.layer).slice_weights(call, kept_in, kept_out))
    return rebuilt


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


def _drop_build_configs(model_config: dict) -> None:
    """Layers must build from the shapes they are now called with, not the widths recorded before pruning."""
    for entry in model_config["layers"]:
        entry.pop("build_config", None)
        if "layers" in entry.get("config", {}):
            _drop_build_configs(entry["config"])


def _find_layer_config(model_config: dict, path: tuple[str, ...], name: str) -> dict:
    config = model_config
    for nested in path:
        config = _layer_entry(config, nested)["config"]
    return _layer_entry(config, name)


def _layer_entry(model_config: dict, name: str) -> dict:
    for entry in model_config["layers"]:
        if entry["config"].get("name") == name or entry.get("name") == name:
            return entry
    raise KeyError(f"Layer {name!r} is not in the model config.")


def find_layer(model: keras.Model, path: tuple[str, ...], name: str) -> keras.layers.Layer:
    """The layer `name` inside the nested models `path` of `model`."""
    container = model
    for nested in path:
        container = container.get_layer(nested)
    return container.get_layer(name)
