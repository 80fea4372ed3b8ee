"""The registry: which handler answers for each layer class, and which layers are traced instead of handled.

Supporting a new layer kind is one handler class and one `register_handler` line; the graph, the surgery,
the cost model, magnitude pruning and the latency tables all ask the layer's handler.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import keras

from segprune.backend._keras_internals import (
    application_channelwise_layers,
    attention_operations,
    concatenate_operation,
    elementwise_operations,
    expand_dims_operation,
    fused_attention_operations,
    getitem_operation,
    keras_hub_identity_layers,
    pad_operation,
    reduction_operations,
    repeat_operation,
    split_operation,
)
from segprune.backend.keras_fixes import keras_hub_vit_embedding_round_trip
from segprune.graph.handlers import (
    ActivationHandler,
    ChannelHandler,
    ChannelwiseHandler,
    ConcatenateHandler,
    ConvHandler,
    DenseLikeHandler,
    DepthwiseHandler,
    DotProductAttentionHandler,
    EinsumDenseHandler,
    EinsumOperationHandler,
    ExpandDimsHandler,
    FlattenHandler,
    GetItemHandler,
    GlobalPoolingHandler,
    GroupNormalizationHandler,
    InputHandler,
    MatmulHandler,
    MergeHandler,
    NormalizationHandler,
    PadHandler,
    PoolingHandler,
    ReductionHandler,
    RepeatHandler,
    RescalingHandler,
    ReshapeHandler,
    SeparableHandler,
    SoftmaxOperationHandler,
    SplitHandler,
    TransposeConvHandler,
    TransposeHandler,
    UnsupportedLayerError,
)
from segprune.graph.handlers.vision_transformer import keras_hub_traced_forms, keras_hub_vision_transformer_handlers

_CHANNELWISE = (
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.UpSampling2D,
    keras.layers.Resizing,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.Identity,
    keras.layers.Normalization,
)
_MERGE_LAYERS = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)

_REGISTRY: dict[type, ChannelHandler] = {}


def register_handler(layer_class: type, handler: ChannelHandler) -> None:
    """Tells segprune how a layer class couples and slices channels.

    Example:
        >>> register_handler(MyChannelwiseActivation, ChannelwiseHandler())
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.Operation)):
        raise TypeError(f"register_handler needs a keras layer (or operation) class, got {layer_class!r}.")
    _REGISTRY[layer_class] = handler


# keras.layers.Identity returns its input: traced, it vanishes, as it must where it cannot write its config
# (keras-hub builds it with a DTypePolicy object, which its automatic get_config cannot serialise).
_TRACED: set[type] = {keras.layers.Identity}
_TRACED_FORMS: dict[type, Callable] = {}


def register_traced(layer_class: type, form: Callable | None = None) -> None:
    """Tells segprune to trace a layer class's `call` into the graph, as the standard layers and `keras.ops`
    it runs at inference, instead of handling the layer as one unit.

    Layers made only of sublayers are traced anyway; this is for a layer without weights of its own whose
    call is written in `keras.ops` (stochastic depth, which is the identity at inference, vanishes).

    `form(layer, *inputs)`, where given, is traced instead of `layer.call`: the same computation written so
    that segprune can follow it (keras-hub's ViTDet attention folds heads into the batch axis; its form keeps
    them on an axis of their own). It must compute what the layer computes from the layer's own weights.

    Example:
        >>> register_traced(MyDropPath)
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(f"register_traced needs a keras layer class, got {layer_class!r}.")
    _TRACED.add(layer_class)
    if form is not None:
        _TRACED_FORMS[layer_class] = form


def is_traced(layer: keras.layers.Layer) -> bool:
    """Whether this layer's class was registered with `register_traced`."""
    return type(layer) in _TRACED


def traced_form(layer: keras.layers.Layer) -> Callable | None:
    """The call to trace instead of this layer's own (`register_traced(..., form)`), bound to the layer; None
    where its own call is traced."""
    form = _TRACED_FORMS.get(type(layer))
    return None if form is None else functools.partial(form, layer)


def register_known_layers() -> None:
    """Registers the third-party layers segprune knows (keras-hub's stochastic depth, its vision transformers'
    embeddings and layer scales), once their package is imported."""
    for layer_class in keras_hub_identity_layers():
        _TRACED.add(layer_class)
    for layer_class, handler in keras_hub_vision_transformer_handlers().items():
        _REGISTRY.setdefault(layer_class, handler)
    for layer_class, form in keras_hub_traced_forms().items():
        register_traced(layer_class, form)
    keras_hub_vit_embedding_round_trip()  # a pruned ViT must copy, save and load
    if "keras_hub" in sys.modules:
        from keras_hub.src.models.dinov2.dinov2_layers import DINOV2DropPath

        _TRACED.add(DINOV2DropPath)  # the identity at inference, like MiT's DropPath


def has_handler(layer: keras.layers.Layer) -> bool:
    """Whether a handler is registered for exactly this layer's class."""
    return type(layer) in _REGISTRY


def is_width_free(layer: keras.layers.Layer) -> bool:
    """Whether a layer neither holds weights nor names a channel count in its config, and passes each channel
    through (Dropout, ReLU): one such layer called at two widths (an MLP's one Dropout after both of its Dense
    layers) needs nothing in common between its calls, so the graph neither pins nor couples them."""
    handler = _REGISTRY.get(type(layer))
    return type(handler) is ChannelwiseHandler and handler.width_key is None and not layer.weights


def handler_for(layer: keras.layers.Layer) -> ChannelHandler:
    """The handler registered for exactly this layer's class (subclasses are not assumed to behave alike)."""
    handler = _REGISTRY.get(type(layer))
    if handler is None:
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} of class {type(layer).__module__}.{type(layer).__name__} has no channel "
            "handler, so segprune cannot tell how it couples channels. Pass ignore=[...] with the layers that "
            "feed it, or register one: segprune.graph.register_handler(YourLayer, ChannelwiseHandler()) for a "
            "per-channel layer (see segprune/graph/handlers/ for the other handler kinds)."
        )
    return handler


def pricing_handler(layer: keras.layers.Layer) -> ChannelHandler:
    """The handler that prices a layer (MACs, parameters), names its sparse-maskable kernels and its latency
    kind: its class's, else its nearest registered base class's (a Conv2D subclass costs what a Conv2D does),
    else the base handler, which counts parameters and nothing else."""
    for layer_class in type(layer).__mro__:
        if layer_class in _REGISTRY:
            return _REGISTRY[layer_class]
    return ChannelHandler()


def registered_kinds() -> dict[type, ChannelHandler]:
    """Every registered layer (or operation) class with its handler."""
    return dict(_REGISTRY)


for _class in _CHANNELWISE:
    register_handler(_class, ChannelwiseHandler())
for _class in _MERGE_LAYERS:
    register_handler(_class, MergeHandler())
register_handler(keras.layers.Conv2D, ConvHandler())
register_handler(keras.layers.Conv1D, ConvHandler())
register_handler(keras.layers.Dense, DenseLikeHandler("units"))
register_handler(keras.layers.Conv2DTranspose, TransposeConvHandler())
register_handler(keras.layers.DepthwiseConv2D, DepthwiseHandler())
register_handler(keras.layers.SeparableConv2D, SeparableHandler())
register_handler(keras.layers.Concatenate, ConcatenateHandler())
register_handler(concatenate_operation(), ConcatenateHandler())
register_handler(keras.layers.Rescaling, RescalingHandler())
register_handler(keras.layers.Reshape, ReshapeHandler("target_shape"))
register_handler(keras.layers.Flatten, FlattenHandler())
register_handler(keras.layers.Softmax, SoftmaxOperationHandler())
register_handler(keras.layers.Activation, ActivationHandler())
register_handler(keras.layers.GroupNormalization, GroupNormalizationHandler())
register_handler(keras.layers.BatchNormalization, NormalizationHandler(ops_per_element=2))
register_handler(keras.layers.LayerNormalization, NormalizationHandler(ops_per_element=4))
for _class in (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D):
    register_handler(_class, PoolingHandler())
for _class in (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D):
    register_handler(_class, GlobalPoolingHandler())
register_handler(keras.layers.InputLayer, InputHandler())
_BINARY_OPERATIONS, _UNARY_OPERATIONS = elementwise_operations()
for _class in _BINARY_OPERATIONS:
    register_handler(_class, MergeHandler())
for _class in _UNARY_OPERATIONS:
    register_handler(_class, ChannelwiseHandler())
_LAYER_SCALE, _STOCHASTIC_DEPTH = application_channelwise_layers()
register_handler(_LAYER_SCALE, ChannelwiseHandler(width_key="projection_dim"))
register_handler(_STOCHASTIC_DEPTH, ChannelwiseHandler())
_RESHAPE, _TRANSPOSE, _MATMUL, _SOFTMAX = attention_operations()
register_handler(_RESHAPE, ReshapeHandler("newshape"))
register_handler(_TRANSPOSE, TransposeHandler())
register_handler(_MATMUL, MatmulHandler())
register_handler(_SOFTMAX, SoftmaxOperationHandler())
for _class in reduction_operations():
    register_handler(_class, ReductionHandler())
register_handler(keras.layers.EinsumDense, EinsumDenseHandler())
_DOT_PRODUCT_ATTENTION, _EINSUM = fused_attention_operations()
register_handler(_DOT_PRODUCT_ATTENTION, DotProductAttentionHandler())
register_handler(_EINSUM, EinsumOperationHandler())
register_handler(getitem_operation(), GetItemHandler())
register_handler(repeat_operation(), RepeatHandler())
register_handler(expand_dims_operation(), ExpandDimsHandler())
register_handler(split_operation(), SplitHandler())
register_handler(pad_operation(), PadHandler())
