"""The channel dependency graph of a model and its groups of coupled channels.

Every channel position of every tensor holds an *element*. Handlers (handlers/) make producers create
elements and make merges declare elements equal; a union-find then gives the channel *classes*: sets of
positions, across layers and nested models, that must be removed together. Classes created by the same
producers form a *group*, the unit that importance criteria score and selection strategies shrink.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from segprune.backend._keras_internals import GraphTrace, LayerCall, plain_functional, sublayers, trace_graph
from segprune.graph.handlers import UnsupportedLayerError, on_last_axis
from segprune.graph.registry import handler_for, has_handler, is_traced, register_known_layers
from segprune.models.loading import require_graph_model
from segprune.models.outputs import CHANNELS_LAST_FIX


@dataclass
class Group:
    """Coupled channels that are scored and removed together.

    Attributes:
        index: Position in `ChannelGraph.groups`.
        classes: Channel-class ids, in the channel order of the group's first producer.
        prunable: Per class, whether it may be removed (model inputs, outputs and ignored layers may not).
        producers: Qualified names of the layers that create these channels.
        multiple_of: The kept channel count must be a multiple of this (GroupNormalization's groups).
    """

    index: int
    classes: list[int]
    prunable: np.ndarray
    producers: list[str]
    multiple_of: int = 1

    @property
    def size(self) -> int:
        return len(self.classes)

    @property
    def num_prunable(self) -> int:
        return int(self.prunable.sum())


@dataclass
class ChannelGraph:
    """A model's layer calls with, for every tensor they read and write, the channel class at each position.

    Attributes:
        model: The model the graph describes.
        trace: Its flattened layer calls.
        call_inputs: Per call (same order as `trace.calls`), the class of each input channel position.
        call_outputs: Per call, the class of each output channel position.
        groups: The groups of coupled channels, prunable or not.
    """

    model: keras.Model
    trace: GraphTrace
    call_inputs: list[list[np.ndarray]]
    call_outputs: list[list[np.ndarray]]
    groups: list[Group]
    _group_of_class: dict[int, int] = field(default_factory=dict, repr=False)

    def has_class(self, class_id: int) -> bool:
        """Whether `class_id` is a channel class of this graph."""
        return class_id in self._group_of_class

    def group_of_class(self, class_id: int) -> Group:
        """The group a channel class belongs to."""
        if class_id not in self._group_of_class:
            raise ValueError(f"Channel class {class_id} does not exist in model {self.model.name!r}.")
        return self.groups[self._group_of_class[class_id]]

    def prunable_groups(self) -> list[Group]:
        return [group for group in self.groups if group.num_prunable > 0]

    def group_of_layer(self, name: str) -> Group:
        """The group holding the output channels of the layer with this (qualified) name."""
        for index, call in enumerate(self.trace.calls):
            if name in (call.layer.name, call.qualified_name) and self.call_outputs[index]:
                return self.group_of_class(int(self.call_outputs[index][0][0]))
        raise KeyError(f"No layer named {name!r} produces channels in model {self.model.name!r}.")


class _Builder:
    """Union-find over channel elements, used by the handlers while the graph is built."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.owner: list[str] = []
        self.fixed: set[int] = set()
        self.multiples: dict[int, int] = {}
        self._fresh_by_layer: dict[int, list[int]] = {}

    def new(self, count: int, owner: str) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        self.owner.extend([owner] * count)
        return list(range(start, start + count))

    def fresh(self, layer: keras.layers.Layer, count: int) -> list[int]:
        if id(layer) not in self._fresh_by_layer:
            self._fresh_by_layer[id(layer)] = self.new(count, layer.name)
        return list(self._fresh_by_layer[id(layer)])

    def find(self, element: int) -> int:
        root = element
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[element] != root:
            self.parent[element], element = root, self.parent[element]
        return root

    def union(self, first: Sequence[int], second: Sequence[int]) -> None:
        if len(first) != len(second):
            raise UnsupportedLayerError(f"Cannot couple {len(first)} channels with {len(second)}.")
        for a, b in zip(first, second):
            root_a, root_b = self.find(a), self.find(b)
            if root_a != root_b:
                self.parent[max(root_a, root_b)] = min(root_a, root_b)

    def fix(self, elements: Iterable[int]) -> None:
        self.fixed.update(elements)

    def require_multiple(self, elements: Sequence[int], multiple: int) -> None:
        for element in elements:
            self.multiples[element] = math.lcm(self.multiples.get(element, 1), multiple)


def build_channel_graph(
    model: keras.Model, ignore: Iterable[str] = (), input_shape: tuple[int, ...] | None = None
) -> ChannelGraph:
    """Derives the groups of coupled channels of a functional or Sequential model.

    Args:
        model: The model; nested functional models (a `keras.applications` encoder) are entered. A
            `keras.Model` subclass built functionally (keras-hub's backbones) is described as the plain
            functional graph of its layers: `graph.model` is that plain model, sharing the layers.
        ignore: Names of layers (plain or `nested/name`) whose input and output channels must stay.
        input_shape: (height, width) to trace at, so that the calls carry concrete shapes for cost
            estimates; by default the model's own (possibly dynamic) input shape. Axes the model fixes keep
            the model's size.

    Raises:
        UnsupportedLayerError: A layer's class has no registered handler, or a layer couples channels in a
            way segprune cannot express; the message names the layer and the fix.

    Example:
        >>> graph = build_channel_graph(segprune.models.unet())
        >>> [group.size for group in graph.prunable_groups()][:3]
        [16, 16, 32]
    """
    require_graph_model(model, source=f"Model {model.name!r}")
    model = plain_graph(model)
    ignore = set(ignore)
    _check_ignore_names(model, ignore)
    shapes = None
    if input_shape is not None:
        # A model built for a fixed size (keras-hub's resizes in its call are baked in) is traced at that size.
        shapes = [(1, *(given if known is None else known for known, given in zip(x.shape[1:3], input_shape[:2])), *tuple(x.shape[3:])) for x in model.inputs]
    trace = trace_graph(model, shapes)
    builder = _Builder()
    tensors: dict[int, np.ndarray] = {}  # element arrays over the non-batch axes (handlers/base.py)
    for tensor_id, spec in zip(trace.input_ids, model.inputs):
        elements = builder.new(int(spec.shape[-1]), "input")
        builder.fix(elements)
        tensors[tensor_id] = on_last_axis(elements, len(spec.shape))

    first_call_inputs: dict[int, list[np.ndarray]] = {}
    element_inputs, element_outputs = [], []
    for call in trace.calls:
        inputs = [tensors[tensor_id] for tensor_id in call.input_ids]
        _require_channels_last(call)
        outputs = handler_for(call.layer).couple_layout(call, inputs, builder)
        if len(outputs) != len(call.output_ids):
            raise UnsupportedLayerError(f"Layer {call.qualified_name!r} returned {len(call.output_ids)} tensors; its handler described {len(outputs)}.")
        for tensor_id, elements in zip(call.output_ids, outputs):
            tensors[tensor_id] = elements
        if id(call.layer) in first_call_inputs:  # a shared layer prunes the same channels on every call
            for earlier, now in zip(first_call_inputs[id(call.layer)], inputs):
                builder.union(_flat(earlier), _flat(now))
        else:
            first_call_inputs[id(call.layer)] = inputs
        if call.layer.name in ignore or call.qualified_name in ignore:
            for elements in [*inputs, *outputs]:
                builder.fix(_flat(elements))
        element_inputs.append(inputs)
        element_outputs.append(outputs)
    for tensor_id in trace.output_ids:
        builder.fix(_flat(tensors[tensor_id]))

    def classes(element_arrays: list[np.ndarray]) -> list[np.ndarray]:
        # Channels on the last axis: one class per position. Spread over several axes (attention heads): the
        # array flattened, which consumers with weights never read (they take channels on the last axis).
        return [np.array([builder.find(e) for e in _flat(elements)], dtype=np.int64) for elements in element_arrays]

    call_inputs = [classes(lists) for lists in element_inputs]
    call_outputs = [classes(lists) for lists in element_outputs]
    groups, group_of_class = _groups(builder)
    return ChannelGraph(model, trace, call_inputs, call_outputs, groups, group_of_class)


def plain_graph(model: keras.Model) -> keras.Model:
    """The model as the plain functional graph segprune prunes: functional subclasses (keras-hub) re-traced as
    layer lists, composite and traced layers (`register_traced`) replaced by the layers and ops they run.
    A model with none of those is returned as it is; layers and weights are shared, not copied.

    Raises:
        UnsupportedLayerError: A composite layer's call cannot be written as plain layers.
    """
    register_known_layers()
    try:
        return plain_functional(model, expand=is_composite)
    except TypeError as error:  # a composite layer whose call is not a composition of its sublayers
        raise UnsupportedLayerError(f"{error} Otherwise register a handler for it with segprune.graph.register_handler.") from error


def _flat(elements: np.ndarray) -> list[int]:
    return [int(e) for e in np.asarray(elements).ravel()]


def _groups(builder: _Builder) -> tuple[list[Group], dict[int, int]]:
    members: dict[int, list[int]] = {}
    for element in range(len(builder.parent)):
        members.setdefault(builder.find(element), []).append(element)
    fixed_roots = {builder.find(element) for element in builder.fixed}
    by_producers: dict[frozenset[str], list[int]] = {}
    for root in sorted(members):
        producers = frozenset(builder.owner[e] for e in members[root])
        by_producers.setdefault(producers, []).append(root)
    multiple_by_root: dict[int, int] = {}
    for element, multiple in builder.multiples.items():
        root = builder.find(element)
        multiple_by_root[root] = math.lcm(multiple_by_root.get(root, 1), multiple)
    groups, group_of_class = [], {}
    for index, (producers, roots) in enumerate(by_producers.items()):
        prunable = np.array([root not in fixed_roots for root in roots])
        multiple = math.lcm(*(multiple_by_root.get(root, 1) for root in roots))
        groups.append(Group(index, roots, prunable, sorted(producers), multiple))
        for root in roots:
            group_of_class[root] = index
    return groups, group_of_class


def is_composite(layer: keras.layers.Layer) -> bool:
    """A layer with no handler made only of sublayers (keras-hub's SpatialPyramidPooling): its call is traced
    into the graph, so its sublayers are pruned like any others. One with weights of its own is not."""
    if is_traced(layer):
        return True
    if has_handler(layer) or not isinstance(layer, keras.layers.Layer):
        return False
    children = sublayers(layer)
    own = {id(w) for w in layer.weights} - {id(w) for child in children for w in child.weights}
    return bool(children) and not own


def _require_channels_last(call: LayerCall) -> None:
    """segprune reads channels on the last axis: a channels-first layer would be sliced on the wrong axis."""
    if getattr(call.layer, "data_format", None) == "channels_first":
        raise UnsupportedLayerError(
            f"Layer {call.qualified_name!r} ({type(call.layer).__name__}) uses data_format='channels_first'; segprune "
            f"only prunes channels-last models (channels on the last axis). {CHANNELS_LAST_FIX}"
        )


def _check_ignore_names(model: keras.Model, ignore: set[str]) -> None:
    known = set()

    def collect(container, prefix: str) -> None:
        for layer in container.layers:
            known.update({layer.name, prefix + layer.name})
            if hasattr(layer, "layers"):
                collect(layer, prefix + layer.name + "/")

    collect(model, "")
    unknown = sorted(ignore - known)
    if unknown:
        raise ValueError(f"ignore names layers that model {model.name!r} does not have: {unknown}.")
