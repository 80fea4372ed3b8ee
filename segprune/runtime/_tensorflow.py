"""TensorFlow-backend tracing for export: the model's inference graph, with `training=False` said explicitly.

Keras 3.15's `model.export(format="onnx")` traces `model.__call__` with the training flag unset; with a
`Resizing` in the graph the BatchNormalization layers after it then trace in training mode (batch statistics,
moving-average updates), and the exported file differs from Keras. Tracing our own function with
`training=False` avoids that whatever the layers do with an unset flag.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import keras

from segprune.backend.capabilities import require_backend

DEFAULT_OPSET = 17


def check_backend() -> None:
    require_backend("Export (through tf2onnx and the TFLite converter)", ("tensorflow",))


def check_int8_backend() -> None:
    require_backend("Full-integer LiteRT quantization (calibrated in the Keras process)", ("tensorflow",))


def inference_function(model: keras.Model, input_shape: Sequence[int | None]):
    """A `tf.function` of `model(x, training=False)` for float32 inputs of `input_shape` (None: dynamic)."""
    import tensorflow as tf

    check_backend()
    signature = [tf.TensorSpec(tuple(input_shape), tf.float32, name="input")]
    return tf.function(lambda x: model(x, training=False), input_signature=signature, autograph=False), signature


def write_onnx(model: keras.Model, path: str | Path, input_shape: Sequence[int | None], opset: int = DEFAULT_OPSET) -> None:
    """Converts the inference graph with tf2onnx.

    tf2onnx first runs TensorFlow's grappler (constant folding among its passes) on the frozen graph and then
    its own ONNX optimisers (transpose push-down, constant folding, identity removal); with a fully static
    `input_shape` every Shape/Gather/Slice chain that only computes sizes folds into constants there.
    """
    function, signature = inference_function(model, input_shape)
    write_function_onnx(function, signature, path, opset)


def write_function_onnx(function, signature: Sequence, path: str | Path, opset: int = DEFAULT_OPSET) -> None:
    """Converts a `tf.function` traced at `signature` with tf2onnx (any function: a model's inference, or a whole
    detector with its NMS)."""
    import tensorflow as tf
    import tf2onnx

    _register_missing_conversions()
    concrete = function.get_concrete_function(*signature)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="In the future `np.object`", category=FutureWarning)
        if all(tensor.dtype == tf.resource for tensor in concrete.inputs[len(signature):]):
            tf2onnx.convert.from_function(function, input_signature=signature, opset=opset, output_path=str(path))
        else:
            _write_frozen_onnx(concrete, len(signature), opset, path)


_REGISTERED: list[str] = []


def _register_missing_conversions() -> None:
    """TensorFlow ops tf2onnx cannot convert, given an ONNX form: `Erfc` (exact GELU, `keras.activations.gelu`
    with `approximate=False`, in every ViT block) is 1 - Erf(x); without it every GELU model failed to load in ONNX
    Runtime ("No Op registered for Erfc")."""
    if _REGISTERED:
        return
    import numpy as np
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            erf = ctx.make_node("Erf", [node.input[0]])
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
            node.type = "Sub"
            ctx.replace_inputs(node, [one.output[0], erf.output[0]])

    _REGISTERED.append("Erfc")


def _write_frozen_onnx(concrete, num_inputs: int, opset: int, path: str | Path) -> None:
    """tf2onnx's `from_function` for a function that captures constant tensors besides its variables: an eager
    tensor held by the model's graph (`keras.applications.resnet50.preprocess_input`'s mean pixel) is captured as
    an input of the traced function, which `from_function` then lists as an input of the ONNX file that nothing
    feeds ("Required inputs (['functional/Squeeze/input:0']) are missing"). Frozen first, the captures are
    constants and the function's own inputs are the graph's only ones."""
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    input_names = [tensor.name for tensor in frozen.inputs[:num_inputs]]
    output_names = [tensor.name for tensor in frozen.outputs]
    tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(add_shapes=True), name=concrete.name, input_names=input_names, output_names=output_names,
        opset=opset, tensors_to_rename=tf2onnx.convert.tensor_names_from_structed(concrete, input_names, output_names),
        output_path=str(path),
    )


def write_litert(model: keras.Model, path: str | Path, input_shape: Sequence[int | None]) -> None:
    """Float LiteRT model; Keras's LiteRT export calls the model with training=False itself."""
    check_backend()
    model.export(str(path), format="litert", verbose=False, input_signature=[keras.InputSpec(shape=tuple(input_shape), dtype="float32")])


def write_litert_int8(model: keras.Model, path: str | Path, input_shape: Sequence[int], calibration: Sequence) -> None:
    """Full-integer LiteRT model: int8 builtins only, activation ranges from `calibration` batches, float I/O.

    Keras's LiteRT export calls the model with training=False and passes these converter settings on.
    """
    check_int8_backend()
    import tensorflow as tf

    def representative_dataset():
        for batch in calibration:
            yield [batch.astype("float32")]

    model.export(
        str(path),
        format="litert",
        verbose=False,
        input_signature=[keras.InputSpec(shape=tuple(input_shape), dtype="float32")],
        optimizations=[tf.lite.Optimize.DEFAULT],
        representative_dataset=representative_dataset,
        target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
    )
