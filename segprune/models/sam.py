"""Segment Anything (keras-hub's `SAMImageSegmenter`): the image encoder is the network segprune prunes.

A SAM is an image encoder (a ViTDet, almost all of its MACs at 1024x1024), a prompt encoder (points, boxes and
masks to tokens) and a mask decoder (a two-way transformer from prompt tokens and image embeddings to masks). The
encoder runs once per image and the other two once per prompt, so the encoder is what pruning narrows; the prompt
encoder and the mask decoder are copied whole beside it, and the result is again a `SAMImageSegmenter` that
answers the same prompts (`predict` fills in the prompts left out, as keras-hub's does).
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras

from segprune._io import atomic_path


def is_sam(model: object) -> bool:
    """Whether `model` is keras-hub's `SAMImageSegmenter` (False whenever keras_hub has not been imported)."""
    if "keras_hub" not in sys.modules:
        return False
    from keras_hub.src.models.sam.sam_image_segmenter import SAMImageSegmenter

    return isinstance(model, SAMImageSegmenter)


def image_encoder(model: keras.Model) -> keras.Model:
    """The SAM's image encoder: images (height, width, 3) to embeddings (height / patch, width / patch, channels)."""
    return model.backbone.image_encoder


def neck_layers(model: keras.Model) -> tuple[str, ...]:
    """The qualified names of the image encoder's neck (the convolutions and LayerNormalizations after the last
    block that write the embeddings the mask decoder reads): its inner channels are normalised over by
    LayerNormalization, so removing them would change what the kept ones compute; segprune keeps them whole."""
    from segprune.backend._keras_internals import is_graph_model, producing_layer

    neck = producing_layer(image_encoder(model).outputs[0])
    if not is_graph_model(neck):
        return ()
    return tuple(f"{neck.name}/{layer.name}" for layer in neck.layers)


def with_image_encoder(model: keras.Model, encoder: keras.Model) -> keras.Model:
    """A new `SAMImageSegmenter` of `encoder` (a pruned image encoder, any functional model from images to
    embeddings of the same shape) and copies of `model`'s prompt encoder and mask decoder, weights included;
    `model` is not touched.

    Example:
        >>> pruned_sam = with_image_encoder(sam, prune_channels(image_encoder(sam), target="flops=0.5"))
    """
    from keras_hub.src.models.sam.sam_backbone import SAMBackbone
    from keras_hub.src.models.sam.sam_image_segmenter import SAMImageSegmenter

    expected = tuple(image_encoder(model).output.shape[1:])
    if tuple(encoder.output.shape[1:]) != expected:
        raise ValueError(
            f"The image encoder writes embeddings of shape {tuple(encoder.output.shape[1:])}; the mask decoder reads {expected}. "
            "Prune the encoder's heads and MLP units only: its output channels are the decoder's input."
        )
    backbone = model.backbone
    prompt_encoder, mask_decoder = _fresh(backbone.prompt_encoder), _fresh(backbone.mask_decoder)
    rebuilt = SAMImageSegmenter(
        backbone=SAMBackbone(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder, dtype=backbone.dtype_policy),
        preprocessor=model.preprocessor,
    )
    rebuilt(_placeholder_inputs(model))  # builds the decoder's sublayers, whose weights are set next
    prompt_encoder.set_weights(backbone.prompt_encoder.get_weights())
    mask_decoder.set_weights(backbone.mask_decoder.get_weights())
    return rebuilt


def save_sam(model: keras.Model, path: str | Path) -> Path:
    """Saves a SAM atomically as `.keras`, as keras-hub made it (its task compiles itself when built, and a rebuilt
    copy cannot be made from its config by Keras's generic route); it loads with `keras.saving.load_model` once
    keras_hub is installed."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Models are saved in the Keras 3 format; the path must end in .keras, got {str(path)!r}.")
    with atomic_path(path) as temporary:
        model.save(temporary)
    return path


def _fresh(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A new layer of the same class and config (its weights are set once it is built)."""
    return type(layer).from_config(layer.get_config())


def _placeholder_inputs(model: keras.Model) -> dict:
    """One image and one box: enough to run every layer once."""
    import numpy as np

    size = tuple(image_encoder(model).input.shape[1:])
    return {
        "images": np.zeros((1, *size), np.float32),
        "points": np.zeros((1, 1, 2), np.float32),
        "labels": -np.ones((1, 1), np.float32),
        "boxes": np.zeros((1, 1, 2, 2), np.float32),
        "masks": np.zeros((1, 0, 256, 256, 1), np.float32),  # no mask prompt, as keras-hub's placeholder
    }
