"""Sparse and regularised pruning on the real nuclei data: sparsity, Dice, zipped size, MACs, epoch cost.

Trains the default U-Net (or takes --dense), then from it runs magnitude pruning (90%), L1 and L0
regularisation (85%), and the channel-level L0 gates and network slimming (a quarter of the MACs). Epoch
times are compared with plain dense fine-tuning epochs run in the same process (first epochs, which
include tracing, are left out of every median).

    .venv/bin/python benchmarks/sparse_nuclei.py [--dense runs/unet.keras] [--methods magnitude,l1,l0,l0-channel,slimming]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import keras

import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
from segprune import TrainConfig, evaluate, flops, load_data, load_model, save_model, train
from segprune.graph import build_channel_graph
from segprune.models import unet
from segprune.sparse import l0_sparsify, l1_sparsify, magnitude_prune, sparsity_summary
from segprune.structured.regularised import l0_channel_prune, slimming_prune

NUCLEI = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "nuclei-dsb2018"
METHODS = ("magnitude", "l1", "l0", "l0-channel", "slimming")


def steady_epoch_seconds(runs) -> float:
    seconds = [record.seconds for run in runs for record in run.history[1:]]
    return statistics.median(seconds) if seconds else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(NUCLEI))
    parser.add_argument("--dense", default=None, help="a trained model; trained here with the defaults when absent")
    parser.add_argument("--save-dense", default=None, help="where to keep the dense model trained here")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=30, help="pruning / regularised epochs per method")
    parser.add_argument("--recovery-epochs", type=int, default=10, help="L1/L0 epochs after zeroing")
    parser.add_argument("--finetune-epochs", type=int, default=30, help="channel methods: epochs after surgery")
    parser.add_argument("--l1-strength", type=float, default=1e-4)
    parser.add_argument("--l0-strength", type=float, default=None, help="default: l0_sparsify's")
    parser.add_argument("--l0-channel-strength", type=float, default=1.0)
    parser.add_argument("--slimming-strength", type=float, default=1e-4)
    parser.add_argument("--ranking", default="global", choices=("layer", "global"), help="magnitude pruning's ranking")
    parser.add_argument("--json", default=None, help="also write the rows here")
    arguments = parser.parse_args()

    data = load_data(arguments.data)
    keras.utils.set_random_seed(0)
    if arguments.dense:
        dense = load_model(arguments.dense)
    else:
        dense = unet(num_classes=data.num_classes, input_channels=data.image_channels)
        train(dense, data, epochs=40)
        if arguments.save_dense:
            save_model(dense, arguments.save_dense)
    dense_dice = evaluate(dense, data, "test").dice
    dense_macs = flops(dense, (256, 256)).macs
    dense_summary = sparsity_summary(dense)
    config = TrainConfig(patience=None)

    reference = type(dense).from_config(dense.get_config())
    reference.set_weights(dense.get_weights())
    dense_epoch = steady_epoch_seconds([train(reference, data, epochs=6, config=config)])

    rows = [dict(method="dense", target="-", sparsity=dense_summary.sparsity, dice=dense_dice,
                 zipped_mb=dense_summary.zipped_bytes / 1e6, macs=1.0, epoch_cost=1.0, notes="")]
    for method in arguments.methods.split(","):
        keras.utils.set_random_seed(0)
        if method in ("magnitude", "l1", "l0"):
            sparsity = 0.9 if method == "magnitude" else 0.85
            if method == "magnitude":
                result = magnitude_prune(dense, data, sparsity, epochs=arguments.epochs, ranking=arguments.ranking, config=config)
            elif method == "l1":
                result = l1_sparsify(dense, data, sparsity, arguments.epochs, arguments.l1_strength, arguments.recovery_epochs, config)
            else:
                strength = {} if arguments.l0_strength is None else {"strength": arguments.l0_strength}
                result = l0_sparsify(dense, data, sparsity, arguments.epochs, recovery_epochs=arguments.recovery_epochs, config=config, **strength)
            summary = sparsity_summary(result.model)
            rows.append(dict(method=method, target=f"sparsity={sparsity}", sparsity=summary.sparsity,
                             dice=evaluate(result.model, data, "test").dice, zipped_mb=summary.zipped_bytes / 1e6,
                             macs=summary.macs_if_zeros_skipped / dense_macs,
                             epoch_cost=steady_epoch_seconds(result.training[:1]) / dense_epoch,
                             notes="; ".join(result.notes), trajectory=result.trajectory))
        else:
            prune = l0_channel_prune if method == "l0-channel" else slimming_prune
            strength = arguments.l0_channel_strength if method == "l0-channel" else arguments.slimming_strength
            dense_graph = {"graph": build_channel_graph(dense, input_shape=(256, 256))} if method == "l0-channel" else {}  # where the gates go
            result = prune(dense, data, "flops=0.25", arguments.epochs, strength, arguments.finetune_epochs, config=config, **dense_graph)
            summary = sparsity_summary(result.model)
            rows.append(dict(method=method, target="flops=0.25", sparsity=summary.sparsity,
                             dice=evaluate(result.model, data, "test").dice, zipped_mb=summary.zipped_bytes / 1e6,
                             macs=flops(result.model, (256, 256)).macs / dense_macs,
                             epoch_cost=steady_epoch_seconds(result.training[:1]) / dense_epoch,
                             notes="; ".join(result.notes), trajectory=result.trajectory))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "trajectory"}), flush=True)

    print(f"\nnuclei test tiles; dense fine-tune epoch {dense_epoch:.2f} s (median, same run)")
    print(f"{'method':<12}{'target':<17}{'sparsity':>9}{'Dice':>8}{'zipped MB':>11}{'MACs':>7}{'epoch cost':>12}")
    for row in rows:
        print(f"{row['method']:<12}{row['target']:<17}{row['sparsity']:>9.3f}{row['dice']:>8.4f}"
              f"{row['zipped_mb']:>11.2f}{row['macs']:>7.3f}{row['epoch_cost']:>11.2f}x")
    print("MACs: the share of dense MACs; for sparse rows, what a kernel that skips zero weights would execute.")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
