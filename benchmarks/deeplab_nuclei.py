"""keras-hub DeepLabV3 (small ResNet encoder) on the built-in nuclei tiles: trained from scratch, pruned to half its
MACs, fine-tuned; Dice, MACs and ONNX Runtime latency of the dense and pruned models.

The model is keras-hub's `DeepLabV3ImageSegmenter` at a random initialisation (no presets can be downloaded),
taken by segprune as the plain functional graph of its layers (`plain_graph`), so that the dense and the pruned
models train, evaluate and export through the same code. Both are fixed at 128x128 (the nuclei tile size):
keras-hub's spatial pyramid pooling resizes to its input's size, which must be known to prune it.

    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/deeplab_nuclei.py [--epochs 40 --finetune-epochs 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import keras

import segprune  # first: it quiets TensorFlow's start-up logging
from segprune import evaluate, flops, load_data, train
from segprune.graph.groups import plain_graph
from segprune.runtime.benchmark import onnx_latency
from segprune.runtime.export import export_onnx

SIZE = 128


def deeplab(channels: int, num_classes: int) -> keras.Model:
    """keras-hub DeepLabV3 on a two-stage ResNet (64 then 128 filters, one basic block each; ASPP rates 2 and 4)."""
    import keras_hub

    image_shape = (SIZE, SIZE, channels)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128], stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2], block_type="basic_block", use_pre_activation=False, image_shape=image_shape,
    )
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, low_level_feature_key="P2", spatial_pyramid_pooling_key="P3", dilation_rates=[2, 4],
        upsampling_size=2, image_shape=image_shape,
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=num_classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--finetune-epochs", type=int, default=20)
    parser.add_argument("--target", default="flops=0.5")
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()

    data = load_data("nuclei")
    keras.utils.set_random_seed(0)
    dense = plain_graph(deeplab(data.image_channels, data.num_classes))
    started = time.perf_counter()
    train(dense, data, epochs=arguments.epochs)
    train_seconds = time.perf_counter() - started
    keras.utils.set_random_seed(0)
    result = segprune.prune(
        dense, "l1", target=arguments.target, data=data, finetune_epochs=arguments.finetune_epochs, image_size=SIZE, seed=0
    )
    pruned = result.model

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / "dense.onnx", Path(folder) / "pruned.onnx"]
        differences = [export_onnx(model, path, tolerance=1e-4) for model, path in zip((dense, pruned), paths)]
        latencies = onnx_latency(paths, image_size=SIZE, threads=arguments.threads)
    dense_macs = flops(dense, (SIZE, SIZE)).macs
    for name, model, latency, difference in zip(("dense", "pruned"), (dense, pruned), latencies, differences):
        rows.append((name, flops(model, (SIZE, SIZE)).macs, model.count_params(), evaluate(model, data, "test").dice, latency.median_ms, difference))

    print(f"keras-hub DeepLabV3 (ResNet), nuclei test tiles, ONNX Runtime 1x{SIZE}x{SIZE}, {arguments.threads} threads")
    print(f"dense trained {arguments.epochs} epochs ({train_seconds:.0f} s); pruned to {arguments.target} with l1, "
          f"fine-tuned {result.finetune_epochs} epochs ({result.finetune_seconds:.0f} s)")
    print(f"{'model':<8}{'MMACs':>9}{'MACs':>7}{'params':>10}{'Dice':>8}{'ORT ms':>9}{'ONNX diff':>11}")
    for name, macs, params, dice, ms, difference in rows:
        print(f"{name:<8}{macs / 1e6:>9.1f}{macs / dense_macs:>7.3f}{params:>10}{dice:>8.4f}{ms:>9.2f}{difference:>11.1e}")
    print(f"Dice change: {100 * (rows[1][3] - rows[0][3]):+.2f} points; speed-up {rows[0][4] / rows[1][4]:.2f}x")


if __name__ == "__main__":
    main()
