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
from typing import NamedTuple

import keras
import numpy as np

from segprune.backend._keras_internals import GraphTrace, LayerCall, plain_functional, sublayers, trace_graph
from segprune.graph.handlers import ChannelHandler, PinnedHandler, UnsupportedLayerError, layer_weights, on_last_axis
from segprune.graph.registry import handler_for, has_handler, is_traced, is_width_free, register_known_layers, traced_form
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
        width: Tensor channels each class stands for: 1 for feature-map channels, the head size for attention
            heads (a head's query, key and value channels go together).
    """

    index: int
    classes: list[int]
    prunable: np.ndarray
    producers: list[str]
    multiple_of: int = 1
    width: int = 1

    @property
    def size(self) -> int:
        return len(self.classes)

    @property
    def num_prunable(self) -> int:
        return int(self.prunable.sum())

    def step(self, round_to: int) -> int:
        """The class count the kept classes are a multiple of, for `round_to` counted in tensor channels: a group of
        attention heads 8 wide keeps any number of heads at round_to 8, one of 4 wide an even number.

        Example:
            >>> Group(0, list(range(8)), np.ones(8, bool), ["query"], width=4).step(8)
            2
        """
        return math.lcm(round_to // math.gcd(round_to, self.width), self.multiple_of)

    def allowed_widths(self, round_to: int) -> list[int]:
        """The class counts the group may keep, smallest first: multiples of `step(round_to)` that keep its fixed
        classes, then its full size; empty when it cannot shrink at all.

        Example:
            >>> Group(0, list(range(24)), np.ones(24, bool), ["conv"]).allowed_widths(8)
            [8, 16, 24]
        """
        step = self.step(round_to)
        fixed = self.size - self.num_prunable
        widths = [width for width in range(step, self.size, step) if width >= max(fixed, 1)]
        return widths + [self.size] if widths else []


class Pin(NamedTuple):
    """A layer whose channels in and out are kept whole, and why: segprune cannot tell how it couples them.

    Attributes:
        name: The layer's qualified name (`nested/name` inside nested models).
        reason: Why it is pinned: no handler for its class, its handler cannot express this call's coupling,
            or its call could not be traced into the layers and ops segprune knows.
    """

    name: str
    reason: str


PINNED_FIX = (
    "to prune through a pinned layer, register a handler for its class, e.g. "
    "segprune.graph.register_handler(TheLayer, ChannelwiseHandler()) for a layer that acts on each channel alone "
    "(segprune/graph/handlers/ has the other kinds)"
)
_PINNED = PinnedHandler()


@dataclass
class ChannelGraph:
    """A model's layer calls with, for every tensor they read and write, the channel class at each position.

    Attributes:
        model: The model the graph describes.
        trace: Its flattened layer calls.
        call_inputs: Per call (same order as `trace.calls`), the class of each input channel position.
        call_outputs: Per call, the class of each output channel position.
        groups: The groups of coupled channels, prunable or not.
        pinned: The layers kept whole (see `Pin`), in call order: their input and output channels are never
            removed and the surgery leaves them as they are.
        layouts: Per call, the shape of each input's and output's element array over the non-batch axes
            (handlers/base.py): (1, 1, C) for a feature map, (heads, 1, head size) for per-head queries, so a cost
            can narrow the axis that loses channels (the heads of attention scores).
    """

    model: keras.Model
    trace: GraphTrace
    call_inputs: list[list[np.ndarray]]
    call_outputs: list[list[np.ndarray]]
    groups: list[Group]
    _group_of_class: dict[int, int] = field(default_factory=dict, repr=False)
    pinned: list[Pin] = field(default_factory=list)
    _pinned_layers: set[int] = field(default_factory=set, repr=False)
    layouts: list[tuple[list[tuple[int, ...]], list[tuple[int, ...]]]] = field(default_factory=list, repr=False)

    def is_pinned(self, layer: keras.layers.Layer) -> bool:
        """Whether the layer is kept whole."""
        return id(layer) in self._pinned_layers

    def handler(self, call: LayerCall) -> ChannelHandler:
        """The handler that answers for a call: its class's, or the pinned handler (no channel axes, config kept)
        for a pinned layer."""
        return _PINNED if self.is_pinned(call.layer) else handler_for(call.layer)

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
        self.owner_key: list[object] = []  # the producing layer itself: blocks of a transformer reuse layer names
        self.fixed: set[int] = set()
        self.multiples: dict[int, int] = {}
        self._fresh_by_layer: dict[int, list[int]] = {}

    def new(self, count: int, owner: str, owner_key: object = None) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        self.owner.extend([owner] * count)
        self.owner_key.extend([owner if owner_key is None else owner_key] * count)
        return list(range(start, start + count))

    def fresh(self, layer: keras.layers.Layer, count: int) -> list[int]:
        if id(layer) not in self._fresh_by_layer:
            self._fresh_by_layer[id(layer)] = self.new(count, layer.name, id(layer))
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

    def fix_fresh(self, layer: keras.layers.Layer) -> None:
        """Fixes the producer elements a layer's handler made before it gave up (the layer is pinned)."""
        self.fix(self._fresh_by_layer.get(id(layer), []))

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

    A layer segprune cannot see through is pinned rather than refused (see `Pin`, `graph.pinned`): a layer
    whose class has no handler, one whose handler cannot express a call's coupling (a reshape across channels),
    a composite layer or `Lambda` whose call cannot be traced into keras ops, a layer shared at two widths, a
    layer reading a pinned output whose channel count is unknown. Its inputs and outputs keep all their
    channels, which is exact whatever it computes.

    Raises:
        UnsupportedLayerError: Where pinning cannot keep the result exact: a channels_first layer (channels
            would be read on the wrong axis throughout), a pinned layer that shares variables with a prunable
            one (tied weights). The message names the layer and the fix.

    Example:
        >>> graph = build_channel_graph(segprune.models.unet())
        >>> [group.size for group in graph.prunable_groups()][:3]
        [16, 16, 32]
    """
    # What Keras is asked (the check, the plain graph, the trace) comes first, then the coupling from the trace.
    require_graph_model(model, source=f"Model {model.name!r}")
    register_known_layers()
    untraced: dict = {}
    model = plain_functional(model, expand=_expansion, untraced=untraced)  # as `plain_graph`
    shapes = None
    if input_shape is not None:
        # A model built for a fixed size (keras-hub's resizes in its call are baked in) is traced at that size.
        shapes = [(1, *(given if known is None else known for known, given in zip(x.shape[1:3], input_shape[:2])), *tuple(x.shape[3:])) for x in model.inputs]
    trace = trace_graph(model, shapes)
    ignore = set(ignore)
    _check_ignore_names(model, ignore)
    builder = _Builder()
    tensors: dict[int, np.ndarray] = {}  # element arrays over the non-batch axes (handlers/base.py)
    for tensor_id, spec in zip(trace.input_ids, model.inputs):
        elements = builder.new(int(spec.shape[-1]), "input")
        builder.fix(elements)
        tensors[tensor_id] = on_last_axis(elements, len(spec.shape))

    first_call_inputs: dict[int, list[np.ndarray]] = {}
    element_inputs, element_outputs = [], []
    pins: dict[int, Pin] = {}
    unsized: dict[int, str] = {}  # tensors a pinned layer writes without a known channel count -> that layer
    for call in trace.calls:
        inputs = [tensors[tensor_id] for tensor_id in call.input_ids]
        _require_channels_last(call)
        outputs = _couple(call, inputs, builder, pins, untraced, unsized)
        for tensor_id, elements in zip(call.output_ids, outputs):
            tensors[tensor_id] = elements
        if id(call.layer) in pins:  # every call keeps all its channels: nothing to share between calls
            pass
        elif id(call.layer) in first_call_inputs:  # a shared layer prunes the same channels on every call
            widths = [[int(np.size(e)) for e in calls_inputs] for calls_inputs in (first_call_inputs[id(call.layer)], inputs)]
            if widths[0] != widths[1] and not is_width_free(call.layer):
                pins[id(call.layer)] = Pin(call.qualified_name, f"it is shared by calls on inputs of {widths[0]} and {widths[1]} channels")
                builder.fix_fresh(call.layer)
            for earlier, now in zip(first_call_inputs[id(call.layer)], inputs) if widths[0] == widths[1] else ():
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
    for call, inputs, outputs in zip(trace.calls, element_inputs, element_outputs):
        if id(call.layer) in pins:  # a shared layer pinned at a later call: its earlier calls keep theirs too
            builder.fix([e for elements in [*inputs, *outputs] for e in _flat(elements)])

    def classes(element_arrays: list[np.ndarray]) -> list[np.ndarray]:
        # Channels on the last axis: one class per position. Spread over several axes (attention heads): the
        # array flattened, which consumers with weights never read (they take channels on the last axis).
        return [np.array([builder.find(e) for e in _flat(elements)], dtype=np.int64) for elements in element_arrays]

    call_inputs = [classes(lists) for lists in element_inputs]
    call_outputs = [classes(lists) for lists in element_outputs]
    groups, group_of_class = _groups(builder, _class_widths(call_outputs))
    layouts = [([np.shape(e) for e in ins], [np.shape(e) for e in outs]) for ins, outs in zip(element_inputs, element_outputs)]
    graph = ChannelGraph(model, trace, call_inputs, call_outputs, groups, group_of_class, list(pins.values()), set(pins), layouts)
    _require_untied_pins(graph)
    return graph


def _couple(
    call: LayerCall, inputs: list[np.ndarray], builder: _Builder, pins: dict[int, Pin], untraced: dict, unsized: dict[int, str]
) -> list[np.ndarray]:
    """The call's output elements from its handler; a layer whose channels segprune cannot follow is pinned."""
    if id(call.layer) not in pins:
        reason = _unhandled_reason(call.layer, untraced)
        reading_unsized = [unsized[tensor_id] for tensor_id in call.input_ids if tensor_id in unsized]
        if reason is None and reading_unsized:
            reason = f"it reads a tensor of unknown channel count from pinned {reading_unsized[0]!r}"
        if reason is None:
            try:
                outputs = handler_for(call.layer).couple_layout(call, inputs, builder)
                if len(outputs) != len(call.output_ids):
                    raise UnsupportedLayerError(f"the layer returned {len(call.output_ids)} tensors; its handler described {len(outputs)}")
                return outputs
            except (UnsupportedLayerError, ValueError, IndexError, KeyError) as error:  # whatever the handler tripped on, pinning is exact
                message = str(error) if isinstance(error, UnsupportedLayerError) else f"{type(error).__name__}: {error}"
                reason = f"its {type(handler_for(call.layer)).__name__} cannot express this call's coupling: {message}"
                builder.fix_fresh(call.layer)
        pins[id(call.layer)] = Pin(call.qualified_name, reason)
    for tensor_id, shape in zip(call.output_ids, call.output_shapes):
        if len(shape) >= 2 and shape[-1] is None:
            unsized[tensor_id] = call.qualified_name
    return _PINNED.couple_layout(call, inputs, builder)


def _unhandled_reason(layer, untraced: dict) -> str | None:
    """Why a layer has no handler to ask, or None if it has one."""
    if layer in untraced:
        return f"its call could not be traced into keras ops: {untraced[layer]}"
    if not has_handler(layer):
        return f"no channel handler for class {type(layer).__module__}.{type(layer).__name__}"
    return None


def _require_untied_pins(graph: ChannelGraph) -> None:
    """A pinned layer kept whole must not share a variable with a layer whose channels are pruned: the two
    would need the same variable at two widths (tied weights)."""
    if not graph.pinned:
        return
    pinned_variables = {id(v): call.qualified_name for call in graph.trace.calls if graph.is_pinned(call.layer) for v in layer_weights(call.layer)}
    prunable = {int(c) for group in graph.groups for c, ok in zip(group.classes, group.prunable) if ok}
    for call, inputs, outputs in zip(graph.trace.calls, graph.call_inputs, graph.call_outputs):
        if graph.is_pinned(call.layer):
            continue
        shared = [pinned_variables[id(v)] for v in layer_weights(call.layer) if id(v) in pinned_variables]
        if shared and any(int(c) in prunable for classes in [*inputs, *outputs] for c in classes):
            raise UnsupportedLayerError(
                f"Layer {shared[0]!r} is pinned (kept whole) but shares its variables with {call.qualified_name!r}, whose "
                "channels may be pruned (tied weights), so no smaller model can keep both exact. Keep that layer's "
                f"channels with ignore=[{call.qualified_name!r}], or register a handler for the pinned layer's class."
            )


def plain_graph(model: keras.Model, untraced: dict | None = None) -> keras.Model:
    """The model as the plain functional graph segprune prunes: functional subclasses (keras-hub) re-traced as
    layer lists, composite layers, `Lambda` layers and traced layers (`register_traced`) replaced by the layers
    and ops they run. A model with none of those is returned as it is; layers and weights are shared, not copied.

    A layer whose call cannot be traced stays whole (the graph pins it); `untraced`, if given, receives
    {layer: why}.
    """
    register_known_layers()
    return plain_functional(model, expand=_expansion, untraced={} if untraced is None else untraced)


def _expansion(layer: keras.layers.Layer):
    """What `plain_functional` traces a layer as: its registered form (a callable), its own call (True), or
    nothing (False: the layer stays one unit)."""
    return traced_form(layer) or is_composite(layer)


def _flat(elements: np.ndarray) -> list[int]:
    return [int(e) for e in np.asarray(elements).ravel()]


def _class_widths(call_outputs: list[list[np.ndarray]]) -> dict[int, int]:
    """Per class, the most positions it fills in one output tensor (a head's head-size channels; 1 for a channel)."""
    widths: dict[int, int] = {}
    for outputs in call_outputs:
        for classes in outputs:
            found, counts = np.unique(classes, return_counts=True)
            for class_id, count in zip(found.tolist(), counts.tolist()):
                widths[class_id] = max(widths.get(class_id, 1), count)
    return widths


def _groups(builder: _Builder, widths: dict[int, int]) -> tuple[list[Group], dict[int, int]]:
    members: dict[int, list[int]] = {}
    for element in range(len(builder.parent)):
        members.setdefault(builder.find(element), []).append(element)
    fixed_roots = {builder.find(element) for element in builder.fixed}
    by_producers: dict[frozenset, list[int]] = {}
    for root in sorted(members):
        producers = frozenset(builder.owner_key[e] for e in members[root])
        by_producers.setdefault(producers, []).append(root)
    multiple_by_root: dict[int, int] = {}
    for element, multiple in builder.multiples.items():
        root = builder.find(element)
        multiple_by_root[root] = math.lcm(multiple_by_root.get(root, 1), multiple)
    groups, group_of_class = [], {}
    for index, roots in enumerate(by_producers.values()):
        prunable = np.array([root not in fixed_roots for root in roots])
        multiple = math.lcm(*(multiple_by_root.get(root, 1) for root in roots))
        names = sorted({builder.owner[e] for root in roots for e in members[root]})
        groups.append(Group(index, roots, prunable, names, multiple, max(widths.get(root, 1) for root in roots)))
        for root in roots:
            group_of_class[root] = index
    return groups, group_of_class


def is_composite(layer: keras.layers.Layer) -> bool:
    """A layer with no handler made only of sublayers (keras-hub's SpatialPyramidPooling), or a `Lambda`: its
    call is traced into the graph, so its sublayers and ops are pruned like any others. One with weights of its
    own is not."""
    if is_traced(layer) or (isinstance(layer, keras.layers.Lambda) and not has_handler(layer)):
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
