"""What a segmentation model's input and output mean: one image batch in; probabilities or logits, binary or
multi-class, out."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from segprune.backend._keras_internals import all_sublayers, is_graph_model, producing_layer

# Layers that move or resample values without changing what they mean: the activation is further back.
_PASS_THROUGH = (
    keras.layers.Resizing,
    keras.layers.UpSampling2D,
    keras.layers.Cropping2D,
    keras.layers.ZeroPadding2D,
    keras.layers.Reshape,
    keras.layers.Identity,
)


@dataclass(frozen=True)
class OutputKind:
    """How to read a model's output.

    Attributes:
        activation: `"sigmoid"`, `"softmax"` or `"linear"` (logits).
        channels: Output channels; 1 means binary (foreground probability or logit).
    """

    activation: str
    channels: int

    @property
    def num_classes(self) -> int:
        return 2 if self.channels == 1 else self.channels

    @property
    def from_logits(self) -> bool:
        return self.activation == "linear"


def base_model(model: keras.Model) -> keras.Model:
    """The functional model inside a training wrapper (`SparseModel.base_model`), or `model` itself."""
    return getattr(model, "base_model", model)


CHANNELS_LAST_FIX = (
    "Build the model channels-last (keras.config.set_image_data_format('channels_last') before building it, or "
    "data_format='channels_last' on each layer) and copy the weights across with set_weights(): conv kernels have the "
    "same shape in both."
)


def check_image_input(model: keras.Model) -> None:
    """Refuses a model with more than one input, or a channels-first one: segprune feeds, times and exports one
    image batch, channels on the last axis.

    Raises:
        ValueError: Naming the inputs (or the channels-first layer) found and what segprune expects.
    """
    model = base_model(model)
    first = next((layer for layer in all_sublayers(model) if getattr(layer, "data_format", None) == "channels_first"), None)
    if first is not None:
        raise ValueError(
            f"Layer {first.name!r} ({type(first).__name__}) of model {model.name!r} uses data_format='channels_first'; "
            f"segprune reads channels-last models (channels on the last axis). {CHANNELS_LAST_FIX}"
        )
    if len(model.inputs) != 1:
        shapes = ", ".join(str(tuple(x.shape)) for x in model.inputs)
        raise ValueError(
            f"Model {model.name!r} takes {len(model.inputs)} inputs ({shapes}); segprune expects one image input of shape "
            "(batch, height, width, channels). Build a model whose only input is the image (stack extra image-like "
            "inputs as channels of it)."
        )


def output_kind(model: keras.Model) -> OutputKind:
    """Detects the output convention of a single-output segmentation model from its last activation.

    Example:
        >>> output_kind(segprune.models.unet(num_classes=2))
        OutputKind(activation='sigmoid', channels=1)
    """
    check_image_input(model)
    model = base_model(model)
    if len(model.outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(model.outputs)} outputs; segprune expects one output of shape "
            "(batch, height, width, channels). Build a model that returns only the segmentation map."
        )
    output = model.outputs[0]
    if len(output.shape) != 4:
        raise ValueError(
            f"Model {model.name!r} outputs shape {tuple(output.shape)}; a segmentation model must output "
            "(batch, height, width, channels)."
        )
    channels = int(output.shape[-1])
    activation = _activation_of(producing_layer(output))
    if activation == "sigmoid" and channels != 1:
        raise ValueError(
            f"Model {model.name!r} ends in a sigmoid over {channels} channels (multi-label); segprune "
            "expects one sigmoid channel for binary masks or a softmax over the classes."
        )
    return OutputKind(activation, channels)


def _activation_of(layer: keras.layers.Layer) -> str:
    while True:
        if is_graph_model(layer):
            layer = producing_layer(layer.outputs[0])
        elif isinstance(layer, keras.layers.Softmax):
            return "softmax"
        elif isinstance(layer, _PASS_THROUGH):
            layer = producing_layer(_single_input(layer))
        else:
            activation = getattr(layer, "activation", None)
            name = getattr(activation, "__name__", "linear") if activation is not None else "linear"
            return name if name in ("sigmoid", "softmax") else "linear"


def _single_input(layer: keras.layers.Layer) -> keras.KerasTensor:
    tensors = keras.tree.flatten(layer.input)
    return tensors[0]
