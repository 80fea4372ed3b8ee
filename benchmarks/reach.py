"""Reach: segprune on segmentation models written the way Keras users write them (issue 26 item 5).

Each architecture below is built from code in this file, the way its source writes it (random weights, nothing is
downloaded), at a small input size, then:

1. pruned with `segprune.prune(model, "l1", target="flops=0.5", image_size=its size)`;
2. checked: the output shape is kept, and the pruned model equals the original whose removed channels are zeroed
   in every consumer (the exactness harness of tests/graph/harness.py, on the very channels l1 selected; the
   `segprune.prune` result must give the same outputs as that selection);
3. exported to ONNX and verified against Keras (`segprune.runtime.export.export_model`, which refuses a file
   differing by more than 1e-4).

One table row per model: dense MMACs, the share of MACs left after pruning, exactness, the ONNX difference, the
layers pinned (kept whole) and the seconds it all took. Run from the repository root:

    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/reach.py            # all models, ~90 s on 2 cores
    .venv/bin/python benchmarks/reach.py --models sequential,resunet            # a subset

Architectures (their sources):
- xception-unet: keras.io "Image segmentation with a U-Net-like architecture" (SeparableConv2D, residual adds).
- deeplabv3plus: keras.io "Multiclass semantic segmentation using DeepLabV3+" (ResNet50 trunk, weights=None,
  behind `resnet50.preprocess_input`, ASPP with image pooling, `ops.nn.relu` on symbolic tensors).
- attention-unet: the attention U-Net of medical-imaging repos (Oktay et al.; additive attention gates whose sigmoid
  is repeated over the skip's channels by a `Lambda` of `repeat` and multiplies the skip).
- resunet: ResUNet (Zhang et al.) as medical-imaging repos write it (pre-activation residual blocks).
- unet-plus-plus: U-Net++ (Zhou et al., the authors' Keras code: nested dense skips, Dropout).
- sequential: a `keras.Sequential` encoder-decoder.
- se-lambda-unet: an SE-ResNet U-Net whose squeeze-and-excitation uses `Lambda` layers (a third-party Keras 2
  library's `expand_dims`, and a lambda multiply), saved to .keras and reloaded with trust by `segprune.load_model`.
- mobilenetv2-unet-128x256: the TensorFlow segmentation tutorial's MobileNetV2 U-Net (nested encoder model,
  pix2pix upsample blocks as nested Sequentials) at a rectangular 128x256 street-scene size.
- keras-hub-deeplabv3: keras-hub's DeepLabV3ImageSegmenter built from a config (no preset).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the exactness harness lives in tests/

import segprune  # noqa: E402
from segprune import defaults  # noqa: E402
from segprune.graph.groups import build_channel_graph  # noqa: E402
from segprune.graph.surgery import remove_channels  # noqa: E402
from segprune.runtime.export import export_model  # noqa: E402
from segprune.structured.importance import channel_importance  # noqa: E402
from segprune.structured.oneshot import ratio_for_target  # noqa: E402
from tests.graph.harness import infer, randomize_weights, zeroed_copy  # noqa: E402

TARGET = "flops=0.5"
ROUND_TO = defaults.ROUND_TO  # what segprune.prune and the command line use
EXACT_TOLERANCE = 1e-4  # relative to the output's largest magnitude (float32 through up to 50 layers)


# --- keras.io: Image segmentation with a U-Net-like architecture ------------------------------------------------


def xception_unet(img_size=(128, 128), num_classes=3):
    inputs = keras.Input(shape=img_size + (3,))
    x = layers.Conv2D(32, 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous_block_activation = x
    for filters in [64, 128, 256]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same")(previous_block_activation)
        x = layers.add([x, residual])
        previous_block_activation = x
    for filters in [256, 128, 64, 32]:
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.UpSampling2D(2)(x)
        residual = layers.UpSampling2D(2)(previous_block_activation)
        residual = layers.Conv2D(filters, 1, padding="same")(residual)
        x = layers.add([x, residual])
        previous_block_activation = x
    outputs = layers.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs)


# --- keras.io: Multiclass semantic segmentation using DeepLabV3+ -------------------------------------------------


def convolution_block(block_input, num_filters=256, kernel_size=3, dilation_rate=1, use_bias=False):
    x = layers.Conv2D(
        num_filters, kernel_size=kernel_size, dilation_rate=dilation_rate, padding="same", use_bias=use_bias,
        kernel_initializer=keras.initializers.HeNormal(),
    )(block_input)
    x = layers.BatchNormalization()(x)
    return ops.nn.relu(x)


def dilated_spatial_pyramid_pooling(dspp_input):
    dims = dspp_input.shape
    x = layers.AveragePooling2D(pool_size=(dims[-3], dims[-2]))(dspp_input)
    x = convolution_block(x, kernel_size=1, use_bias=True)
    out_pool = layers.UpSampling2D(size=(dims[-3] // x.shape[1], dims[-2] // x.shape[2]), interpolation="bilinear")(x)
    out_1 = convolution_block(dspp_input, kernel_size=1, dilation_rate=1)
    out_6 = convolution_block(dspp_input, kernel_size=3, dilation_rate=6)
    out_12 = convolution_block(dspp_input, kernel_size=3, dilation_rate=12)
    out_18 = convolution_block(dspp_input, kernel_size=3, dilation_rate=18)
    x = layers.Concatenate(axis=-1)([out_pool, out_1, out_6, out_12, out_18])
    return convolution_block(x, kernel_size=1)


def deeplabv3_plus(image_size=128, num_classes=3):
    model_input = keras.Input(shape=(image_size, image_size, 3))
    preprocessed = keras.applications.resnet50.preprocess_input(model_input)
    resnet50 = keras.applications.ResNet50(weights=None, include_top=False, input_tensor=preprocessed)
    x = resnet50.get_layer("conv4_block6_2_relu").output
    x = dilated_spatial_pyramid_pooling(x)
    input_a = layers.UpSampling2D(size=(image_size // 4 // x.shape[1], image_size // 4 // x.shape[2]), interpolation="bilinear")(x)
    input_b = resnet50.get_layer("conv2_block3_2_relu").output
    input_b = convolution_block(input_b, num_filters=48, kernel_size=1)
    x = layers.Concatenate(axis=-1)([input_a, input_b])
    x = convolution_block(x)
    x = convolution_block(x)
    x = layers.UpSampling2D(size=(image_size // x.shape[1], image_size // x.shape[2]), interpolation="bilinear")(x)
    model_output = layers.Conv2D(num_classes, kernel_size=(1, 1), padding="same")(x)
    return keras.Model(inputs=model_input, outputs=model_output)


# --- Attention U-Net, as medical-imaging repos write it -----------------------------------------------------------


def repeat_elem(tensor, rep):
    return layers.Lambda(lambda x, repnum: ops.repeat(x, repnum, axis=3), arguments={"repnum": rep})(tensor)


def gating_signal(input, out_size, batch_norm=True):
    x = layers.Conv2D(out_size, (1, 1), padding="same")(input)
    if batch_norm:
        x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def attention_block(x, gating, inter_shape):
    shape_x = x.shape
    shape_g = gating.shape
    theta_x = layers.Conv2D(inter_shape, (2, 2), strides=(2, 2), padding="same")(x)
    shape_theta_x = theta_x.shape
    phi_g = layers.Conv2D(inter_shape, (1, 1), padding="same")(gating)
    upsample_g = layers.Conv2DTranspose(
        inter_shape, (3, 3), strides=(shape_theta_x[1] // shape_g[1], shape_theta_x[2] // shape_g[2]), padding="same"
    )(phi_g)
    concat_xg = layers.add([upsample_g, theta_x])
    act_xg = layers.Activation("relu")(concat_xg)
    psi = layers.Conv2D(1, (1, 1), padding="same")(act_xg)
    sigmoid_xg = layers.Activation("sigmoid")(psi)
    shape_sigmoid = sigmoid_xg.shape
    upsample_psi = layers.UpSampling2D(size=(shape_x[1] // shape_sigmoid[1], shape_x[2] // shape_sigmoid[2]))(sigmoid_xg)
    upsample_psi = repeat_elem(upsample_psi, shape_x[3])
    y = layers.multiply([upsample_psi, x])
    result = layers.Conv2D(shape_x[3], (1, 1), padding="same")(y)
    return layers.BatchNormalization()(result)


def conv_block(x, filter_size, size, dropout, batch_norm=True):
    conv = layers.Conv2D(size, (filter_size, filter_size), padding="same")(x)
    if batch_norm:
        conv = layers.BatchNormalization(axis=3)(conv)
    conv = layers.Activation("relu")(conv)
    conv = layers.Conv2D(size, (filter_size, filter_size), padding="same")(conv)
    if batch_norm:
        conv = layers.BatchNormalization(axis=3)(conv)
    conv = layers.Activation("relu")(conv)
    if dropout > 0:
        conv = layers.Dropout(dropout)(conv)
    return conv


def attention_unet(input_shape=(128, 128, 3), num_classes=1, filter_num=16, dropout_rate=0.0):
    inputs = layers.Input(input_shape, dtype="float32")
    skips, x = [], inputs
    for level in range(4):
        x = conv_block(x, 3, filter_num * 2**level, dropout_rate)
        skips.append(x)
        x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = conv_block(x, 3, filter_num * 16, dropout_rate)
    for level in reversed(range(4)):
        gating = gating_signal(x, filter_num * 2**level)
        attention = attention_block(skips[level], gating, filter_num * 2**level)
        x = layers.UpSampling2D(size=(2, 2), data_format="channels_last")(x)
        x = layers.concatenate([x, attention], axis=3)
        x = conv_block(x, 3, filter_num * 2**level, dropout_rate)
    x = layers.Conv2D(num_classes, kernel_size=(1, 1))(x)
    x = layers.BatchNormalization(axis=3)(x)
    return keras.Model(inputs, layers.Activation("sigmoid")(x), name="Attention_UNet")


# --- ResUNet (Zhang et al.), as medical-imaging repos write it ------------------------------------------------


def bn_act(x, act=True):
    x = layers.BatchNormalization()(x)
    if act:
        x = layers.Activation("relu")(x)
    return x


def res_conv_block(x, filters, kernel_size=(3, 3), padding="same", strides=1):
    conv = bn_act(x)
    return layers.Conv2D(filters, kernel_size, padding=padding, strides=strides)(conv)


def stem(x, filters, kernel_size=(3, 3), padding="same", strides=1):
    conv = layers.Conv2D(filters, kernel_size, padding=padding, strides=strides)(x)
    conv = res_conv_block(conv, filters, kernel_size=kernel_size, padding=padding, strides=strides)
    shortcut = layers.Conv2D(filters, kernel_size=(1, 1), padding=padding, strides=strides)(x)
    shortcut = bn_act(shortcut, act=False)
    return layers.Add()([conv, shortcut])


def residual_block(x, filters, kernel_size=(3, 3), padding="same", strides=1):
    res = res_conv_block(x, filters, kernel_size=kernel_size, padding=padding, strides=strides)
    res = res_conv_block(res, filters, kernel_size=kernel_size, padding=padding, strides=1)
    shortcut = layers.Conv2D(filters, kernel_size=(1, 1), padding=padding, strides=strides)(x)
    shortcut = bn_act(shortcut, act=False)
    return layers.Add()([shortcut, res])


def upsample_concat_block(x, xskip):
    return layers.Concatenate()([layers.UpSampling2D((2, 2))(x), xskip])


def resunet(image_size=128):
    f = [16, 32, 64, 128, 256]
    inputs = keras.layers.Input((image_size, image_size, 3))
    e1 = stem(inputs, f[0])
    e2 = residual_block(e1, f[1], strides=2)
    e3 = residual_block(e2, f[2], strides=2)
    e4 = residual_block(e3, f[3], strides=2)
    e5 = residual_block(e4, f[4], strides=2)
    b1 = res_conv_block(res_conv_block(e5, f[4], strides=1), f[4], strides=1)
    d1 = residual_block(upsample_concat_block(b1, e4), f[4])
    d2 = residual_block(upsample_concat_block(d1, e3), f[3])
    d3 = residual_block(upsample_concat_block(d2, e2), f[2])
    d4 = residual_block(upsample_concat_block(d3, e1), f[1])
    outputs = keras.layers.Conv2D(1, (1, 1), padding="same", activation="sigmoid")(d4)
    return keras.models.Model(inputs, outputs)


# --- U-Net++ (Zhou et al.), after the authors' Keras code ---------------------------------------------------------


def standard_unit(input_tensor, stage, nb_filter, kernel_size=3):
    x = layers.Conv2D(nb_filter, (kernel_size, kernel_size), activation="relu", name="conv" + stage + "_1",
                      kernel_initializer="he_normal", padding="same")(input_tensor)
    x = layers.Dropout(0.5, name="dp" + stage + "_1")(x)
    x = layers.Conv2D(nb_filter, (kernel_size, kernel_size), activation="relu", name="conv" + stage + "_2",
                      kernel_initializer="he_normal", padding="same")(x)
    return layers.Dropout(0.5, name="dp" + stage + "_2")(x)


def unet_plus_plus(img_rows=128, img_cols=128, color_type=3, num_class=1):
    nb_filter = [16, 32, 64, 128, 256]
    img_input = layers.Input(shape=(img_rows, img_cols, color_type), name="main_input")
    nodes = {}  # (i, j): X^{i,j} of the paper
    for i in range(5):
        source = img_input if i == 0 else layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"pool{i}")(nodes[i - 1, 0])
        nodes[i, 0] = standard_unit(source, stage=f"{i + 1}1", nb_filter=nb_filter[i])
    for j in range(1, 5):
        for i in range(5 - j):
            up = layers.Conv2DTranspose(nb_filter[i], (2, 2), strides=(2, 2), name=f"up{i + 1}{j + 1}", padding="same")(nodes[i + 1, j - 1])
            merged = layers.concatenate([up] + [nodes[i, k] for k in range(j)], name=f"merge{i + 1}{j + 1}", axis=3)
            nodes[i, j] = standard_unit(merged, stage=f"{i + 1}{j + 1}", nb_filter=nb_filter[i])
    output = layers.Conv2D(num_class, (1, 1), activation="sigmoid", name="output_4", padding="same")(nodes[0, 4])
    return keras.Model(img_input, output)


# --- A Sequential encoder-decoder --------------------------------------------------------------------------------


def sequential_net(size=128, num_classes=4):
    return keras.Sequential([
        keras.Input((size, size, 3)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(),
        layers.Conv2D(128, 3, padding="same", activation="relu"),
        layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(num_classes, 1, activation="softmax"),
    ])


# --- An SE-ResNet U-Net with Lambda squeeze-and-excitation (a third-party Keras 2 library's style) --------------


def expand_dims(x, channels_axis):
    """The library's Lambda after GlobalAveragePooling2D (a named function: the file names it, the loader is given it)."""
    return x[:, None, None, :] if channels_axis == 3 else x[:, :, None, None]


def channel_se_block(x, reduction=4):
    channels = x.shape[-1]
    se = layers.GlobalAveragePooling2D()(x)
    se = layers.Lambda(expand_dims, arguments={"channels_axis": 3})(se)
    se = layers.Conv2D(channels // reduction, (1, 1), kernel_initializer="he_uniform")(se)
    se = layers.Activation("relu")(se)
    se = layers.Conv2D(channels, (1, 1), kernel_initializer="he_uniform")(se)
    se = layers.Activation("sigmoid")(se)
    return layers.Lambda(lambda pair: pair[0] * pair[1])([x, se])


def se_residual_unit(x, filters, strides=1):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    y = layers.Activation("relu")(layers.BatchNormalization()(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = channel_se_block(layers.BatchNormalization()(y))
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.BatchNormalization()(layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut))
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


def se_resnet_unet(size=128, num_classes=2):
    inputs = keras.Input((size, size, 3))
    x = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)))
    skips = []
    for stage, filters in enumerate([16, 32, 64, 128]):
        x = se_residual_unit(x, filters, strides=1 if stage == 0 else 2)
        x = se_residual_unit(x, filters)
        skips.append(x)
    for filters, skip in zip([64, 32, 16], reversed(skips[:-1])):
        x = layers.Concatenate()([layers.UpSampling2D()(x), skip])
        x = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)))
        x = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)))
    return keras.Model(inputs, layers.Conv2D(num_classes, 3, padding="same", activation="softmax")(x))


def se_resnet_unet_reloaded(folder: Path) -> keras.Model:
    path = folder / "se_resnet_unet.keras"
    se_resnet_unet().save(path)
    return segprune.load_model(path, custom_objects={"expand_dims": expand_dims}, safe_mode=False)


# --- TensorFlow's image segmentation tutorial: MobileNetV2 U-Net, here at 128x256 ----------------------------------


def upsample(filters, size):
    """pix2pix.upsample (without dropout): Conv2DTranspose, BatchNorm, ReLU in a Sequential."""
    initializer = keras.initializers.RandomNormal(0.0, 0.02)
    return keras.Sequential([
        layers.Conv2DTranspose(filters, size, strides=2, padding="same", kernel_initializer=initializer, use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
    ])


def mobilenetv2_unet(input_shape=(128, 256, 3), output_channels=3):
    base_model = keras.applications.MobileNetV2(input_shape=input_shape, include_top=False, weights=None)
    layer_names = ["block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu", "block_16_project"]
    base_model_outputs = [base_model.get_layer(name).output for name in layer_names]
    down_stack = keras.Model(inputs=base_model.input, outputs=base_model_outputs)
    up_stack = [upsample(512, 3), upsample(256, 3), upsample(128, 3), upsample(64, 3)]
    inputs = keras.layers.Input(shape=input_shape)
    skips = down_stack(inputs)
    x = skips[-1]
    for up, skip in zip(up_stack, reversed(skips[:-1])):
        x = keras.layers.Concatenate()([up(x), skip])
    last = keras.layers.Conv2DTranspose(filters=output_channels, kernel_size=3, strides=2, padding="same")
    return keras.Model(inputs=inputs, outputs=last(x))


# --- keras-hub: DeepLabV3ImageSegmenter from a config ----------------------------------------------------------------


def keras_hub_deeplabv3(size=96, num_classes=3):
    import keras_hub

    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 64, 128], stackwise_num_blocks=[2, 2, 2],
        stackwise_num_strides=[1, 2, 2], block_type="basic_block", use_pre_activation=False, image_shape=(size, size, 3),
    )
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, low_level_feature_key="P2", spatial_pyramid_pooling_key="P4", dilation_rates=[6, 12, 18],
        upsampling_size=4, image_shape=(size, size, 3),
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=num_classes)


# --- The checks -----------------------------------------------------------------------------------------------------


@dataclass
class Architecture:
    name: str
    size: tuple[int, int]
    build: Callable[[Path], keras.Model]
    exactness: str = "harness"  # or the reason the zeroed-original comparison does not apply


ARCHITECTURES = [
    Architecture("xception-unet", (128, 128), lambda folder: xception_unet((128, 128))),
    Architecture("deeplabv3plus", (128, 128), lambda folder: deeplabv3_plus(128)),
    Architecture("attention-unet", (128, 128), lambda folder: attention_unet()),
    Architecture("resunet", (128, 128), lambda folder: resunet()),
    Architecture("unet-plus-plus", (128, 128), lambda folder: unet_plus_plus()),
    Architecture("sequential", (128, 128), lambda folder: sequential_net()),
    Architecture("se-lambda-unet", (128, 128), se_resnet_unet_reloaded),
    Architecture("mobilenetv2-unet-128x256", (128, 256), lambda folder: mobilenetv2_unet()),
    Architecture("keras-hub-deeplabv3", (96, 96), lambda folder: keras_hub_deeplabv3()),
]


@dataclass
class Row:
    name: str
    size: tuple[int, int]
    dense_mmacs: float = 0.0
    macs_ratio: float = float("nan")
    shape_kept: bool = False
    exact: str = "n.a."
    exact_difference: float = float("nan")
    onnx_difference: float = float("nan")
    pinned: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


def selection_is_exact(model: keras.Model, size: tuple[int, int], pruned: keras.Model) -> tuple[bool, float]:
    """The harness's comparison on the channels l1 selects for the target: the pruned model against the original
    with those channels zeroed in every consumer; `pruned` (segprune.prune's result) must match it too."""
    graph = build_channel_graph(model, input_shape=size)
    scores = channel_importance(graph, "l1")
    removed = ratio_for_target(graph, scores, TARGET, ROUND_TO).select(graph, scores, ROUND_TO)
    selected = remove_channels(graph, removed)
    reference = zeroed_copy(graph, removed)
    sample = np.random.default_rng(0).random((2, *size, model.inputs[0].shape[-1])).astype(np.float32)
    expected = infer(reference, sample)
    scale = max(1.0, float(np.max(np.abs(expected))))
    difference = float(np.max(np.abs(infer(selected, sample) - expected)))
    same_as_prune = float(np.max(np.abs(infer(pruned, sample) - infer(selected, sample))))
    worst = max(difference, same_as_prune) / scale
    return worst <= EXACT_TOLERANCE, worst


def measure(architecture: Architecture, folder: Path) -> Row:
    row = Row(architecture.name, architecture.size)
    started = time.perf_counter()
    try:
        keras.utils.set_random_seed(0)
        model = architecture.build(folder)
        randomize_weights(model)  # BatchNorm statistics and biases that show a wrongly sliced channel
        result = segprune.prune(model, "l1", target=TARGET, image_size=architecture.size, round_to=ROUND_TO, progress=False)
        summary = result.summary
        row.dense_mmacs, row.macs_ratio, row.pinned = summary.macs_before / 1e6, summary.macs_ratio, list(summary.pinned)
        sample = np.random.default_rng(1).random((1, *architecture.size, model.inputs[0].shape[-1])).astype(np.float32)
        row.shape_kept = infer(result.model, sample).shape == infer(model, sample).shape and result.model.output_shape == model.output_shape
        if architecture.exactness == "harness":
            exact, row.exact_difference = selection_is_exact(model, architecture.size, result.model)
            row.exact = "yes" if exact else "no"
        row.onnx_difference = export_model(result.model, folder / f"{architecture.name}.onnx", "onnx", input_shape=(1, *architecture.size))
    except Exception as error:  # a benchmark reports every model, a failing one with its error
        row.error = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    row.seconds = time.perf_counter() - started
    return row


def print_table(rows: list[Row]) -> None:
    print("| model | input | dense MMACs | MACs left | shape kept | exact (rel. diff) | ONNX max diff | pinned | seconds |")
    print("|---|---|---:|---:|---|---|---:|---|---:|")
    for row in rows:
        pinned = ", ".join(name for name, _ in row.pinned) or "none"
        exact = row.exact if row.exact == "n.a." else f"{row.exact} ({row.exact_difference:.1e})"
        print(
            f"| {row.name} | {row.size[0]}x{row.size[1]} | {row.dense_mmacs:.0f} | {row.macs_ratio:.3f} | {'yes' if row.shape_kept else 'NO'} | "
            f"{exact} | {row.onnx_difference:.1e} | {pinned} | {row.seconds:.0f} |"
        )
    for row in rows:
        for name, reason in row.pinned:
            print(f"- {row.name}: `{name}` pinned: {reason}")
        if row.error:
            print(f"- {row.name} FAILED: {row.error}")
        elif row.macs_ratio > 0.6:
            print(f"- {row.name}: {row.macs_ratio:.3f} of the MACs left, above 0.6")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [architecture.name for architecture in ARCHITECTURES]
    parser.add_argument("--models", default=",".join(names), help=f"comma-separated subset of {names}")
    args = parser.parse_args(argv)
    chosen = args.models.split(",")
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {names}")
    print(f"# {Path(__file__).relative_to(ROOT)} --models {args.models}  (keras {keras.__version__}, backend {keras.backend.backend()})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="segprune-reach-") as scratch:
        for architecture in ARCHITECTURES:
            if architecture.name in chosen:
                rows.append(measure(architecture, Path(scratch)))
                print(f"  {architecture.name}: {rows[-1].seconds:.0f} s {rows[-1].error}", file=sys.stderr, flush=True)
    print_table(rows)
    failed = [row for row in rows if row.error or row.macs_ratio > 0.6 or not row.shape_kept or row.exact == "no"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
