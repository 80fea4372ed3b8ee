"""The networks of Mask R-CNN: the convolutional trunk (encoder, FPN, shared RPN head) and the two RoI heads.

The trunk is one functional model whose outputs are the pyramid levels and, per level, the RPN's objectness
logits and box deltas: the channel graph sees it whole (a head shared across levels, lateral convolutions
coupled by the top-down additions), so it prunes like any other segprune model. Its pyramid levels are outputs,
kept whole there; `pyramid_coupling` joins the trunk to the heads that read them, so their width prunes too.
"""

from __future__ import annotations

import keras
from keras import layers

from segprune.models._blocks import conv_bn_relu, image_input
from segprune.models.mask_rcnn.config import MaskRCNNConfig


def build_trunk(config: MaskRCNNConfig) -> keras.Model:
    """Encoder (our conv-BN-ReLU blocks), FPN P2-P4, and the RPN head applied to every level.

    Outputs, in order: `P2, P3, P4`, then objectness logits `(H_l, W_l, A)` per level, then box deltas
    `(H_l, W_l, 4A)` per level. Height and width must be multiples of 16.
    """
    inputs = image_input(config.input_channels)
    stem, *stage_filters = config.encoder_filters
    x = conv_bn_relu(inputs, stem, "stem_a")
    x = layers.MaxPooling2D(2, name="stem_pool")(x)
    x = conv_bn_relu(x, stem, "stem_b")
    encoder_outputs = []
    for index, filters in enumerate(stage_filters):
        x = layers.MaxPooling2D(2, name=f"c{index + 2}_pool")(x)
        x = conv_bn_relu(x, filters, f"c{index + 2}a")
        x = conv_bn_relu(x, filters, f"c{index + 2}b")
        encoder_outputs.append(x)

    laterals = [layers.Conv2D(config.fpn_filters, 1, name=f"fpn_lateral{level}")(c) for level, c in zip(config.levels, encoder_outputs)]
    merged = [laterals[-1]]
    for level, lateral in zip(reversed(config.levels[:-1]), reversed(laterals[:-1])):
        upsampled = layers.UpSampling2D(2, interpolation="nearest", name=f"fpn_up{level + 1}")(merged[0])
        merged.insert(0, layers.Add(name=f"fpn_merge{level}")([lateral, upsampled]))
    pyramid = [layers.Conv2D(config.fpn_filters, 3, padding="same", name=f"fpn_p{level}")(m) for level, m in zip(config.levels, merged)]

    anchors = config.anchors_per_position
    rpn_conv = layers.Conv2D(config.fpn_filters, 3, padding="same", activation="relu", name="rpn_conv")
    rpn_logits = layers.Conv2D(anchors, 1, name="rpn_logits")
    rpn_deltas = layers.Conv2D(4 * anchors, 1, name="rpn_deltas")
    shared = [rpn_conv(p) for p in pyramid]
    logits = [rpn_logits(s) for s in shared]
    deltas = [rpn_deltas(s) for s in shared]
    return keras.Model(inputs, [*pyramid, *logits, *deltas], name="mask_rcnn_trunk")


def build_box_head(config: MaskRCNNConfig) -> keras.Model:
    """Pooled RoI features -> class logits (num_classes) and class-specific box deltas (num_classes * 4)."""
    inputs = keras.Input((config.pool_size, config.pool_size, config.fpn_filters), name="pooled")
    x = layers.Flatten(name="box_flatten")(inputs)
    x = layers.Dense(config.box_head_units, activation="relu", name="box_fc1")(x)
    x = layers.Dense(config.box_head_units, activation="relu", name="box_fc2")(x)
    class_logits = layers.Dense(config.num_classes, name="box_class_logits")(x)
    deltas = layers.Dense(4 * config.num_classes, name="box_deltas")(x)
    return keras.Model(inputs, [class_logits, deltas], name="mask_rcnn_box_head")


def build_mask_head(config: MaskRCNNConfig) -> keras.Model:
    """Pooled RoI features (14x14) -> mask logits per class (28x28)."""
    size = config.mask_pool_size
    inputs = keras.Input((size, size, config.fpn_filters), name="pooled")
    x = inputs
    for index in range(config.mask_head_convs):
        x = layers.Conv2D(config.mask_head_filters, 3, padding="same", activation="relu", name=f"mask_conv{index + 1}")(x)
    x = layers.Conv2DTranspose(config.mask_head_filters, 2, strides=2, activation="relu", name="mask_up")(x)
    logits = layers.Conv2D(config.num_classes, 1, name="mask_logits")(x)
    return keras.Model(inputs, logits, name="mask_rcnn_mask_head")


POOLED_NAMES = ("box_pooled", "mask_pooled")  # the layers of `pyramid_coupling` whose outputs each head reads


def pyramid_coupling(trunk: keras.Model, box_head: keras.Model, mask_head: keras.Model, config: MaskRCNNConfig) -> keras.Model:
    """The trunk and both RoI heads in one functional model, joined where the heads read the pyramid.

    RoIAlign pools channel c of a region's pyramid level into channel c of a head's input, so each pyramid channel,
    the shared RPN convolution's input channel and both heads' first input channels are one group of coupled
    channels. RoIAlign is no Keras layer; here it is stood for by what it does to channels: every level resized to
    the head's pool size (per channel) and the levels summed (a region may be pooled from any level). The model is
    for the channel graph, never run for its outputs: the pyramid is not among them, so its width may be pruned, and
    a pruned copy's layers named as `trunk`, `box_head` and `mask_head` are the detector's networks.

    Outputs: the trunk's outputs after the pyramid (objectness logits, box deltas), then the box head's and the
    mask head's.

    Example:
        >>> coupled = pyramid_coupling(model.trunk, model.box_head, model.mask_head, model.config)
        >>> build_channel_graph(coupled).group_of_layer("box_pooled").producers
        ['fpn_p2', 'fpn_p3', 'fpn_p4']
    """
    images = keras.Input(trunk.inputs[0].shape[1:], name="images")
    outputs = trunk(images)
    pyramid = outputs[: len(config.levels)]
    heads = []
    for name, head, size in zip(POOLED_NAMES, (box_head, mask_head), (config.pool_size, config.mask_pool_size)):
        resized = [layers.Resizing(size, size, name=f"{name}_p{level}")(level_features) for level, level_features in zip(config.levels, pyramid)]
        heads.append(head(layers.Add(name=name)(resized)))
    box_outputs, mask_outputs = (keras.tree.flatten(head_outputs) for head_outputs in heads)
    return keras.Model(images, [*outputs[len(config.levels) :], *box_outputs, *mask_outputs], name="mask_rcnn_pyramid_coupling")
