"""The one place that reads private Keras attributes.

Keras 3 keeps a functional model's graph in `Function._nodes_by_depth`, walks it with
`Function._run_through_graph`, and records on each symbolic tensor the layer that made it in
`KerasTensor._keras_history`. None of that is public API, so every use lives here: a Keras upgrade that
moves them changes this file only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer while a model runs on a given input shape.

    Attributes:
        layer: The layer that was called.
        path: Names of the nested models around the layer, outermost first (empty at the top level).
        input_shapes: Shapes of the tensors the layer received, batch dimension included.
        output_shapes: Shapes of the tensors it returned.
    """

    layer: keras.layers.Layer
    path: tuple[str, ...]
    input_shapes: tuple[tuple[int | None, ...], ...]
    output_shapes: tuple[tuple[int | None, ...], ...]

    @property
    def qualified_name(self) -> str:
        return "/".join((*self.path, self.layer.name))


def is_graph_model(layer: keras.layers.Layer) -> bool:
    """True for a functional or Sequential model, whose layers segprune can see."""
    return isinstance(layer, keras.Sequential) or (
        isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")
    )


def producing_layer(tensor: keras.KerasTensor) -> keras.layers.Layer:
    """The layer whose call produced a symbolic tensor of a functional model."""
    return tensor._keras_history.operation


def trace_layer_calls(model: keras.Model, input_shape: tuple[int | None, ...]) -> list[LayerCall]:
    """Runs `model` symbolically on one input of `input_shape` and records every layer call in order.

    Nested functional and Sequential models are entered, so their layers appear individually with the
    nested model's name in `path`; the nested model itself is not listed.
    """
    calls: list[LayerCall] = []
    spec = keras.KerasTensor(input_shape, dtype=model.inputs[0].dtype if model.inputs else "float32")
    _run_model(model, spec, (), calls)
    return calls


def _shapes(structure) -> tuple[tuple[int | None, ...], ...]:
    return tuple(tuple(x.shape) for x in keras.tree.flatten(structure) if hasattr(x, "shape"))


def _recording(path: tuple[str, ...], calls: list[LayerCall]) -> Callable:
    def operation_fn(operation):
        def run(*args, **kwargs):
            if is_graph_model(operation):
                model_inputs = args[0] if args else kwargs["inputs"]
                return _run_model(operation, model_inputs, (*path, operation.name), calls)
            outputs = operation.compute_output_spec(*args, **kwargs)
            calls.append(LayerCall(operation, path, _shapes((args, kwargs)), _shapes(outputs)))
            return outputs

        return run

    return operation_fn


def _run_model(model, inputs, path: tuple[str, ...], calls: list[LayerCall]):
    if isinstance(model, keras.Sequential):
        outputs = inputs
        for layer in model.layers:
            outputs = _recording(path, calls)(layer)(outputs)
        return outputs
    return model._run_through_graph(inputs, operation_fn=_recording(path, calls))


def allow_dynamic_resize() -> None:
    """Lets `UpSampling2D(interpolation="bilinear")` run on inputs of unknown height and width.

    Keras 3.15 validates `size[0] <= 0` in `keras.ops.image.resize` (keras-team/keras#22079). Inside a
    TensorFlow graph whose input is (None, None, C), UpSampling2D passes a symbolic size, and that Python
    comparison raises OperatorNotAllowedInGraphError: every bilinear U-Net with a dynamic input fails in
    `fit` and `predict`. This wrapper skips the check for symbolic sizes only (their positivity follows
    from the input shape) and changes nothing else. Idempotent.
    """
    from keras.src.ops import image as image_ops

    if getattr(image_ops.resize, "_segprune_wrapped", False):
        return
    original = image_ops.resize

    def resize(images, size, *args, **kwargs):
        symbolic_size = not all(isinstance(value, (int, np.integer)) for value in size)
        if symbolic_size and not keras.src.backend.any_symbolic_tensors((images,)):
            return image_ops._resize(images, size, *args, **kwargs)
        return original(images, size, *args, **kwargs)

    resize._segprune_wrapped = True
    image_ops.resize = resize
