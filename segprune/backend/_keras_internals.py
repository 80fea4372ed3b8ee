"""The one place that reads private Keras attributes.

Keras 3 keeps a functional model's graph in `Function._nodes_by_depth`, walks it with
`Function._run_through_graph`, and records on each symbolic tensor the layer that made it in
`KerasTensor._keras_history`. None of that is public API, so every use lives here: a Keras upgrade that
moves them changes this file only.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import keras
import numpy as np


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer while a model runs on a given input shape.

    Attributes:
        layer: The layer that was called.
        path: Names of the nested models around the layer, outermost first (empty at the top level).
        input_shapes: Shapes of the tensors the layer received, batch dimension included, in call order.
        output_shapes: Shapes of the tensors it returned.
        input_ids: Identities of the received tensors (matching earlier calls' `output_ids`).
        output_ids: Identities of the returned tensors.
        constants: The positional arguments that are not tensors, in call order (`x[..., ::-1]`'s key).
    """

    layer: keras.layers.Layer
    path: tuple[str, ...]
    input_shapes: tuple[tuple[int | None, ...], ...]
    output_shapes: tuple[tuple[int | None, ...], ...]
    input_ids: tuple[int, ...] = ()
    output_ids: tuple[int, ...] = ()
    constants: tuple = ()

    @property
    def qualified_name(self) -> str:
        return "/".join((*self.path, self.layer.name))


@dataclass
class GraphTrace:
    """Every layer call of a model in execution order, nested models flattened, with tensor identities.

    Attributes:
        calls: The layer calls (a nested model's layers appear in place of the nested model).
        input_ids: Identities of the model's input tensors.
        output_ids: Identities of the model's output tensors.
        nested_inputs: Per call of a nested model: its path and the identities of the tensors it received, in
            the order of its inputs (a traced `Lambda(lambda t: t[0] * t[1])` takes two).
        specs: The symbolic tensors themselves, kept alive so that their ids stay unique.
    """

    calls: tuple[LayerCall, ...]
    input_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    nested_inputs: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = ()
    specs: list = field(default_factory=list, repr=False)


def is_graph_model(layer: keras.layers.Layer) -> bool:
    """True for a functional or Sequential model, whose layers segprune can see."""
    return isinstance(layer, keras.Sequential) or (
        isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")
    )


def leaf_layers(model: keras.Model, path: tuple[str, ...] = ()):
    """Yields (path, layer) for every layer of `model`, nested functional and Sequential models entered."""
    for layer in model.layers:
        if is_graph_model(layer):
            yield from leaf_layers(layer, (*path, layer.name))
        else:
            yield path, layer


def find_layer(model: keras.Model, path: tuple[str, ...], name: str) -> keras.layers.Layer:
    """The layer `name` inside the nested models `path` of `model` (a path as `leaf_layers` and `LayerCall` give it)."""
    container = model
    for nested in path:
        container = container.get_layer(nested)
    return container.get_layer(name)


def producing_layer(tensor: keras.KerasTensor) -> keras.layers.Layer:
    """The layer whose call produced a symbolic tensor of a functional model."""
    return tensor._keras_history.operation


def trace_layer_calls(model: keras.Model, input_shape: tuple[int | None, ...]) -> list[LayerCall]:
    """Runs `model` symbolically on one input of `input_shape` and records every layer call in order.

    Nested functional and Sequential models are entered, so their layers appear individually with the
    nested model's name in `path`; the nested model itself is not listed.
    """
    return list(trace_graph(model, [input_shape]).calls)


def trace_graph(model: keras.Model, input_shapes: list[tuple[int | None, ...]] | None = None) -> GraphTrace:
    """Runs `model` symbolically and records its flattened graph.

    Each tensor is a fresh symbolic spec, so `id()` identifies it for the life of the trace (the specs are
    kept alive inside the returned object).

    Args:
        model: A functional or Sequential model.
        input_shapes: One shape per model input, batch included; by default the model's own input shapes.
    """
    if input_shapes is None:
        input_shapes = [tuple(x.shape) for x in model.inputs]
    specs = [keras.KerasTensor(shape, dtype=x.dtype) for shape, x in zip(input_shapes, model.inputs)]
    calls: list[LayerCall] = []
    keep_alive: list = list(specs)
    nested_inputs: list = []
    outputs = _run_model(model, specs if len(specs) > 1 else specs[0], (), calls, keep_alive, nested_inputs)
    return GraphTrace(
        calls=tuple(calls),
        input_ids=tuple(id(x) for x in specs),
        output_ids=tuple(id(x) for x in keras.tree.flatten(outputs)),
        nested_inputs=tuple(nested_inputs),
        specs=keep_alive,
    )


def run_with_hook(model: keras.Model, inputs, hook: Callable[[LayerCall, list], None], training: bool = False):
    """Runs `model` eagerly on real `inputs`, calling `hook(call, outputs)` after every (nested) layer call.

    The `LayerCall` passed has layer and path set (shapes and ids empty). Returns the model's outputs.
    """

    def wrap(path: tuple[str, ...]):
        def operation_fn(operation):
            def run(*args, **kwargs):
                if is_graph_model(operation):
                    return _run_eager(operation, args[0] if args else kwargs["inputs"], (*path, operation.name))
                if "training" in kwargs or _accepts_training(operation):
                    kwargs["training"] = training
                outputs = operation(*args, **kwargs)
                hook(LayerCall(operation, path, (), ()), keras.tree.flatten(outputs))
                return outputs

            return run

        return operation_fn

    def _run_eager(container, container_inputs, path):
        if isinstance(container, keras.Sequential):
            outputs = container_inputs
            for layer in container.layers:
                outputs = wrap(path)(layer)(outputs)
            return outputs
        return container._run_through_graph(container_inputs, operation_fn=wrap(path))

    return _run_eager(model, inputs, ())


def _accepts_training(layer) -> bool:
    return bool(getattr(layer, "_call_has_training_arg", False))


def _tensors(structure) -> list:
    return [x for x in keras.tree.flatten(structure) if isinstance(x, keras.KerasTensor)]


def _recording(path: tuple[str, ...], calls: list[LayerCall], keep_alive: list, nested_inputs: list) -> Callable:
    def operation_fn(operation):
        def run(*args, **kwargs):
            if is_graph_model(operation):
                model_inputs = args[0] if args else kwargs["inputs"]
                nested_path = (*path, operation.name)
                nested_inputs.append((nested_path, tuple(id(x) for x in _tensors(model_inputs))))
                return _run_model(operation, model_inputs, nested_path, calls, keep_alive, nested_inputs)
            if "training" in kwargs and isinstance(operation, keras.layers.Layer) and not _accepts_training(operation):
                kwargs = {key: value for key, value in kwargs.items() if key != "training"}  # as Layer.__call__ drops it
            outputs = operation.compute_output_spec(*args, **kwargs)
            if getattr(operation, "weights", None) and _open_sizes(outputs) and not _open_sizes((args, kwargs)):
                outputs = _spec_by_running(operation, args, kwargs)
            inputs, results = _tensors((args, kwargs)), _tensors(outputs)
            keep_alive.extend(results)
            calls.append(
                LayerCall(
                    layer=operation,
                    path=path,
                    input_shapes=tuple(tuple(x.shape) for x in inputs),
                    output_shapes=tuple(tuple(x.shape) for x in results),
                    input_ids=tuple(id(x) for x in inputs),
                    output_ids=tuple(id(x) for x in results),
                    constants=tuple(arg for arg in args if not _tensors(arg)),
                )
            )
            return outputs

        return run

    return operation_fn


def _open_sizes(structure) -> bool:
    """Whether a tensor in `structure` has a size left open (None) beyond its batch axis."""
    return any(None in tuple(x.shape)[1:] for x in _tensors(structure))


def _spec_by_running(layer: keras.layers.Layer, args: tuple, kwargs: dict):
    """The output specs of a layer whose `compute_output_spec` leaves sizes open that its inputs fix: EinsumDense
    declared with `output_shape=(None, heads, size)` (as MultiHeadAttention does) keeps the token count None, and
    every layer after it would be priced without it. The layer is run once on zeros of its inputs' shapes."""
    batch = next((tuple(x.shape)[0] for x in _tensors((args, kwargs))), None)

    def zeros(x):
        return keras.ops.zeros((1, *tuple(x.shape)[1:]), dtype=x.dtype) if isinstance(x, keras.KerasTensor) else x

    values = layer(*keras.tree.map_structure(zeros, args), **keras.tree.map_structure(zeros, kwargs))
    return keras.tree.map_structure(lambda value: keras.KerasTensor((batch, *tuple(value.shape)[1:]), dtype=value.dtype), values)


def _run_model(model, inputs, path: tuple[str, ...], calls: list[LayerCall], keep_alive: list, nested_inputs: list):
    recording = _recording(path, calls, keep_alive, nested_inputs)
    if isinstance(model, keras.Sequential):
        outputs = inputs
        for layer in model.layers:
            outputs = recording(layer)(outputs)
        return outputs
    return model._run_through_graph(inputs, operation_fn=recording)


_ELEMENTWISE_BINARY_OPS = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power")
_ELEMENTWISE_UNARY_OPS = (
    ("numpy", ("Negative", "Absolute", "Abs", "Square", "Sqrt", "Exp", "Log", "Tanh", "Clip")),
    ("core", ("Cast",)),
    ("image", ("Resize",)),
    ("nn", ("Relu", "Relu6", "Sigmoid", "Softplus", "Softsign", "Silu", "LeakyRelu", "HardSigmoid", "HardSilu", "Elu", "Selu", "Gelu", "Celu")),
)


def elementwise_operations() -> tuple[list[type], list[type]]:
    """Keras op classes that become graph nodes when functional code writes `x + y`, `x * 0.5`, `ops.relu(x)`.

    Returns (binary ops, unary ops). They live in `keras.src.ops`, which is not public API. The
    `CustomScaleLayer` of `keras.applications.InceptionResNetV2` (`a + b * scale`) counts as binary.
    """
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    from keras.src.ops import core as core_ops
    from keras.src.ops import image as image_ops
    from keras.src.ops import nn as nn_ops
    from keras.src.ops import numpy as numpy_ops

    modules = {"numpy": numpy_ops, "nn": nn_ops, "core": core_ops, "image": image_ops}
    binary = [getattr(numpy_ops, name) for name in _ELEMENTWISE_BINARY_OPS if hasattr(numpy_ops, name)]
    unary = [getattr(modules[module], name) for module, names in _ELEMENTWISE_UNARY_OPS for name in names if hasattr(modules[module], name)]
    return [*binary, CustomScaleLayer], unary


def concatenate_operation() -> type:
    """The op class that `keras.ops.concatenate` on symbolic tensors becomes (it has an `axis`, like the layer)."""
    from keras.src.ops import numpy as numpy_ops

    return numpy_ops.Concatenate


def application_channelwise_layers() -> tuple[type, type]:
    """Layer classes of `keras.applications` that act on each channel alone, kept in `keras.src`.

    ConvNeXt's `LayerScale` (a learnt per-channel factor) and `StochasticDepth` (drops whole samples while
    training, the identity otherwise).
    """
    from keras.src.applications.convnext import LayerScale, StochasticDepth

    return LayerScale, StochasticDepth


def is_functional_subclass(layer) -> bool:
    """True for a `keras.Model` subclass built functionally (keras-hub's backbones and task models).

    Keras makes such a class inherit from its `Functional` class, so the layer graph can be walked, but
    its `get_config` holds the constructor's arguments instead of the layer list.
    """
    from keras.src.models.functional import Functional

    return isinstance(layer, Functional) and type(layer) is not Functional


def plain_functional(
    model: keras.Model, expand: Callable | None = None, untraced: dict | None = None, _rebuilt: dict | None = None
) -> keras.Model:
    """The same layers re-called as a plain `keras.Model(inputs, outputs)`, functional subclasses flattened.

    A functional subclass (at the top or nested as a layer) is replaced by a plain functional model over
    its own layers, so the result's config is a layer list and rebuilding it needs no subclass
    constructor. Models holding no functional subclass are returned as they are. Layers (and so weights)
    are shared with `model`, not copied.

    Layers `expand` picks are replaced by the layers and ops their `call` runs (or, where `expand` answers a
    callable, the ones that callable runs on the layer's inputs). Where that tracing fails and
    `untraced` is a dict, the layer stays whole and `untraced[layer]` says why; otherwise the TypeError
    naming the layer propagates.

    `_rebuilt` maps each model already flattened in this call to its flat copy, keyed by the model itself:
    an `id()` key would let a traced composite, freed once used, hand its address and so its entry to the
    next one traced (seen as a stem's copy called on an encoder stage's input). It also counts the expanded
    calls of each layer, under `("calls", layer)`.
    """
    expand = expand or (lambda layer: False)
    rebuilt = {} if _rebuilt is None else _rebuilt
    if isinstance(model, keras.Sequential) or not _needs_rebuild(model, expand):
        return model
    if model in rebuilt:
        return rebuilt[model]

    calls = Counter(node.operation for nodes in model._nodes_by_depth.values() for node in nodes)

    def operation_fn(operation):
        if is_graph_model(operation) and _needs_rebuild(operation, expand):
            return plain_functional(operation, expand, untraced, rebuilt)
        if not is_graph_model(operation) and expand(operation) and calls[operation] > 1 and operation.weights and untraced is not None:
            # Expanded per call, a shared composite with weights (a head on every pyramid level) would become
            # several nested models holding the same layers, which a rebuild from the config unshares.
            untraced[operation] = f"Layer {operation.name!r} ({type(operation).__name__}) is called {calls[operation]} times; a shared composite layer is kept whole."
        elif not is_graph_model(operation) and expand(operation):
            return lambda *args, **kwargs: _call_expanded(operation, args, kwargs, expand, untraced, rebuilt)
        return operation

    inputs = [
        keras.Input(batch_shape=tuple(x.shape), dtype=x.dtype, name=x._keras_history.operation.name) for x in model.inputs
    ]
    outputs = model._run_through_graph(inputs, operation_fn=operation_fn)
    structured_inputs = keras.tree.pack_sequence_as(model._inputs_struct, inputs)
    rebuilt[model] = keras.Model(structured_inputs, outputs, name=model.name)
    return rebuilt[model]


def _call_expanded(layer, args: tuple, kwargs: dict, expand: Callable, untraced: dict | None, rebuilt: dict):
    """A composite layer's call replaced by its traced graph, itself expanded (composites nest: a transformer
    block holds an attention layer); a call that returns its input (stochastic depth at inference) vanishes.
    A call that cannot be traced leaves the layer whole where `untraced` records why."""
    calls = rebuilt.get(("calls", layer), 0)  # a weightless layer called twice (one Lambda reused): one name per call
    rebuilt[("calls", layer)] = calls + 1
    form = expand(layer)
    try:
        expanded = _expanded(layer, args, kwargs, layer.name if not calls else f"{layer.name}_call{calls}", form if callable(form) else None)
    except TypeError as error:
        if untraced is None:
            raise
        untraced[layer] = str(error)
        return layer(*args, **kwargs)
    keyword_tensors = [value for value in kwargs.values() if isinstance(value, keras.KerasTensor)]
    if keyword_tensors:  # traced with the keyword tensors after the positional ones (MultiHeadAttention(query=q, value=v))
        return plain_functional(expanded, expand, untraced, rebuilt)([*args, *keyword_tensors])
    if len(args) == 1 and isinstance(args[0], keras.KerasTensor) and all(isinstance(inner, keras.layers.InputLayer) for inner in expanded.operations):
        return args[0]
    return plain_functional(expanded, expand, untraced, rebuilt)(args[0] if len(args) == 1 else list(args))


def _needs_rebuild(model, expand: Callable) -> bool:
    if is_functional_subclass(model):
        return True
    return is_graph_model(model) and any(
        _needs_rebuild(layer, expand) if is_graph_model(layer) else expand(layer) for layer in model.layers
    )


def sublayers(layer: keras.layers.Layer) -> list:
    """The layers a layer holds directly (a composite layer's branches), not itself."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def all_sublayers(layer: keras.layers.Layer) -> list:
    """Every layer inside a layer or model, at any depth, not itself."""
    return list(layer._flatten_layers(include_self=False, recursive=True))


def _expanded(layer: keras.layers.Layer, args: tuple, kwargs: dict, name: str, form: Callable | None = None) -> keras.Model:
    """A composite layer's `call` traced on symbolic inputs: a functional model over its own sublayers (a
    `Lambda`'s: over the ops its function runs). One positional list of tensors (`Lambda(lambda t: t[0] * t[1])`)
    is traced as a list input.

    `form`, where given, is traced instead of `layer.call`: the same computation written so that it traces (with
    the batch axis kept apart from heads and windows), answerable for every weight of the layer (it may copy a
    weight into a new standard layer)."""
    listed = len(args) == 1 and isinstance(args[0], (list, tuple))
    tensors = list(args[0]) if listed else list(args)
    # Tensors passed by keyword become inputs after the positional ones; other keywords (use_causal_mask) are kept.
    keyword_tensors = {key: value for key, value in kwargs.items() if isinstance(value, keras.KerasTensor)}
    options = {key: value for key, value in kwargs.items() if key not in keyword_tensors and _call_accepts(layer, key)}
    if (
        not (tensors or keyword_tensors)
        or (listed and keyword_tensors)
        or not all(isinstance(x, keras.KerasTensor) for x in tensors)
        or any(isinstance(x, keras.KerasTensor) for x in keras.tree.flatten(options))
    ):
        raise TypeError(
            f"Layer {layer.name!r} ({type(layer).__name__}) is called with nested structures of tensors; it cannot be expanded."
        )
    inputs = [keras.Input(batch_shape=tuple(x.shape), dtype=x.dtype) for x in [*tensors, *keyword_tensors.values()]]
    by_keyword = dict(zip(keyword_tensors, inputs[len(tensors) :]))
    try:
        call = form or layer.call
        outputs = call(inputs, **options) if listed else call(*inputs[: len(tensors)], **by_keyword, **options)
        expanded = _batch_free_reshapes(keras.Model(inputs if listed or len(inputs) > 1 else inputs[0], outputs, name=name))
    except Exception as error:  # the layer's own code, on symbolic shapes: anything may go wrong there
        raise TypeError(
            f"Layer {layer.name!r} ({type(layer).__name__}) could not be traced into plain layers on input "
            f"{tuple([*tensors, *keyword_tensors.values()][0].shape)} ({type(error).__name__}: {_first_line(error)}); to prune through it, write its call "
            "with keras.ops or build the model for a fixed image size."
        ) from error
    called = {id(variable) for inner in expanded.layers for variable in inner.weights}
    read_directly = [] if form else [variable.path for variable in layer.weights if id(variable) not in called]
    if read_directly:  # a traced op would hold such a variable as a constant: pruning could not follow it
        raise TypeError(
            f"Layer {layer.name!r} ({type(layer).__name__}) uses variables other than through its sublayers' calls "
            f"({', '.join(read_directly[:3])}), so its call cannot be written as plain layers."
        )
    for inner in expanded.layers:
        if isinstance(inner, keras.layers.Resizing) and (inner.height is None or inner.width is None):
            raise TypeError(
                f"Layer {layer.name!r} ({type(layer).__name__}) resizes to its input's size, which is unknown here "
                f"(input {tuple(tensors[0].shape)}), so its call cannot be written as plain layers. Build the model "
                "for a fixed image size (e.g. image_shape=(512, 512, 3)) to prune it."
            )
    return expanded


def _call_accepts(layer: keras.layers.Layer, keyword: str) -> bool:
    """Whether the layer's `call` takes this keyword (Keras passes `training` only to calls that do)."""
    parameters = inspect.signature(layer.call).parameters
    return keyword in parameters or any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())


def _first_line(error: Exception) -> str:
    """An error's message cut to its first line (TensorFlow's on KerasTensors run to a page)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _batch_free_reshapes(model: keras.Model) -> keras.Model:
    """`ops.reshape(x, (batch, ...))` traced with an unknown batch records `None` in its target shape, which no
    backend accepts at run time (keras-hub's attention reshapes by `ops.shape(x)[0]`): such reshapes become
    `keras.layers.Reshape` layers over the non-batch axes."""
    from keras.src.ops import numpy as numpy_ops

    def operation_fn(operation):
        newshape = getattr(operation, "newshape", None)
        if isinstance(operation, numpy_ops.Reshape) and newshape and newshape[0] is None:
            return keras.layers.Reshape(tuple(-1 if size is None else size for size in newshape[1:]), name=operation.name)
        return operation

    if not any(isinstance(operation, numpy_ops.Reshape) and operation.newshape[0] is None for operation in model.operations):
        return model
    inputs = [keras.Input(batch_shape=tuple(x.shape), dtype=x.dtype) for x in model.inputs]
    inputs = inputs[0] if len(inputs) == 1 else inputs
    return keras.Model(inputs, model._run_through_graph(inputs, operation_fn=operation_fn), name=model.name)


def getitem_operation() -> type:
    """The op class that indexing a symbolic tensor becomes (`x[:, None, None, :]`, `x[..., ::-1]`); its key is
    the call's second argument."""
    from keras.src.ops import numpy as numpy_ops

    return numpy_ops.GetItem


def expand_dims_operation() -> type:
    """The op class of `keras.ops.expand_dims` (MultiHeadAttention adds the heads axis to an attention mask)."""
    from keras.src.ops import numpy as numpy_ops

    return numpy_ops.ExpandDims


def split_operation() -> type:
    """The op class of `keras.ops.split` (a SwiGLU MLP's halves)."""
    from keras.src.ops import numpy as numpy_ops

    return numpy_ops.Split


def pad_operation() -> type:
    """The op class of `keras.ops.pad` (Swin pads its token grid to whole windows)."""
    from keras.src.ops import numpy as numpy_ops

    return numpy_ops.Pad


def repeat_operation() -> type:
    """The op class of `keras.ops.repeat` (an attention gate's one channel spread over a skip's channels)."""
    from keras.src.ops import numpy as numpy_ops

    return numpy_ops.Repeat


def reduction_operations() -> list[type]:
    """The op classes of `keras.ops.mean`, `max`, `min` and `sum` (squeeze-excitation pools with `ops.mean`)."""
    from keras.src.ops import numpy as numpy_ops

    return [numpy_ops.Mean, numpy_ops.Max, numpy_ops.Min, numpy_ops.Sum]


def fused_attention_operations() -> tuple[type, type]:
    """The op classes of `keras.ops.dot_product_attention` and `keras.ops.einsum` (what `MultiHeadAttention` runs)."""
    from keras.src.ops import nn as nn_ops
    from keras.src.ops import numpy as numpy_ops

    return nn_ops.DotProductAttention, numpy_ops.Einsum


def attention_operations() -> tuple[type, type, type, type]:
    """The op classes that attention written with `keras.ops` becomes in a functional graph: reshape,
    transpose, matmul (`@`) and softmax (kept in `keras.src.ops`, not public API)."""
    from keras.src.ops import nn as nn_ops
    from keras.src.ops import numpy as numpy_ops

    return numpy_ops.Reshape, numpy_ops.Transpose, numpy_ops.Matmul, nn_ops.Softmax


def keras_hub_identity_layers() -> list[type]:
    """keras-hub layers that are the identity at inference (stochastic depth), once keras_hub is imported."""
    import sys

    if "keras_hub" not in sys.modules:
        return []
    from keras_hub.src.models.mit.mit_layers import DropPath

    return [DropPath]


def reset_keras_seed(seed: int) -> None:
    """Sets Keras' global random seed and drops its global seed generator, the Keras half of
    `keras.utils.set_random_seed` (which also seeds TensorFlow; see `determinism.seed_random`)."""
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)


@contextlib.contextmanager
def placeholder_initial_values() -> Iterator[None]:
    """Variables created inside start as zeros instead of drawing from their random initializers.

    For rebuilding a model whose every weight is assigned right after (surgery, copies): the draw would be
    thrown away, and under JAX each new weight shape compiles its own random kernel with XLA (~0.2 s per
    shape; 17 of the 22 s of rebuilding a small U-Net three times). Constant initializers (zeros, ones,
    BatchNormalization's moving statistics) and seed-generator states keep their own values.

    The backend's `Variable._initialize_with_initializer` (private) is replaced while the block runs, so
    variables created by another thread meanwhile start as zeros too.
    """
    from keras.src.initializers.random_initializers import RandomInitializer

    variable_class = keras.Variable  # the running backend's class
    original = variable_class._initialize_with_initializer
    own = "_initialize_with_initializer" in vars(variable_class)

    def initialize(variable, initializer):
        dtype = np.dtype(variable._dtype) if variable._dtype in ("float16", "float32", "float64") else None
        if isinstance(initializer, RandomInitializer) and dtype is not None:
            variable._initialize(variable._convert_to_tensor(np.zeros(variable._shape, dtype)))
        else:
            original(variable, initializer)

    variable_class._initialize_with_initializer = initialize
    try:
        yield
    finally:
        if own:
            variable_class._initialize_with_initializer = original
        else:
            del variable_class._initialize_with_initializer


def rebuild_from_config(model: keras.Model, config: dict) -> keras.Model:
    """The model `config` describes (an edited copy of `model.get_config()`), built in this process.

    Its weights start as placeholders (see `placeholder_initial_values`), to be assigned. Custom layer classes
    defined in a script are found by name, and each `Lambda` gets `model`'s own function object back: the
    bytecode a config carries would run without the module globals (`tf`, `np`) the function was written with.
    """
    config = copy.deepcopy(config)
    custom_objects = {type(layer).__name__: type(layer) for layer in all_sublayers(model) if not type(layer).__module__.startswith("keras.")}
    _live_lambda_functions(model, config, custom_objects)
    with placeholder_initial_values():
        return type(model).from_config(config, custom_objects=custom_objects)


def _live_lambda_functions(container: keras.Model, config: dict, custom_objects: dict) -> None:
    """Replaces each Lambda's serialised function in `config` by a name that `custom_objects` maps to the layer's
    function object (Keras's own classes are left to Keras: an op and a layer share the name `Reshape`)."""
    entries = {entry.get("config", {}).get("name", entry.get("name")): entry for entry in config.get("layers", [])}
    for layer in getattr(container, "layers", []):
        entry = entries.get(layer.name)
        if entry is None:
            continue
        if isinstance(layer, keras.layers.Lambda):
            for key, value in (("function", layer.function), ("output_shape", layer._output_shape)):
                if isinstance(entry["config"].get(key), dict) and callable(value):
                    name = f"segprune_live_{key}_{id(value)}"
                    custom_objects[name] = value
                    entry["config"][key] = name
        elif is_graph_model(layer):
            _live_lambda_functions(layer, entry["config"], custom_objects)


def rebuilt_copy(model: keras.Model) -> keras.Model:
    """A new model from `model`'s config with its weights (uncompiled); no random draw is made for them."""
    copy = rebuild_from_config(model, model.get_config())
    copy.set_weights(model.get_weights())
    return copy
