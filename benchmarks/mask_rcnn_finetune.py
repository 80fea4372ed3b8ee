"""How the CLI's fine-tune of a pruned Mask R-CNN chooses its epoch, and what that costs on the test tiles.

`segprune prune DETECTOR --method l1 --target flops=0.5 --data nuclei --finetune-epochs N` holds out
`val_fraction` of the 12 training tiles (0.15: 2 tiles), fine-tunes on the rest with `fit_mask_rcnn` and keeps
the epoch with the best validation mask AP. This replays that recipe (same data split, pruning and call) and
also scores the 4 test tiles after every epoch, for analysis only (nothing is chosen by them), so one run shows
the epoch validation chose, the last epoch and the best test epoch side by side.

    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/mask_rcnn_finetune.py --dense DETECTOR.keras --epochs 60
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
from segprune.cost import flops
from segprune.data.instances import load_instance_data
from segprune.instance_metrics import evaluate_instances
from segprune.models.mask_rcnn import MaskRCNN, fit_mask_rcnn, load_mask_rcnn
from segprune.structured.oneshot import prune_channels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", required=True, help="a trained detector (.keras)")
    parser.add_argument("--target", default="flops=0.5")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak Adam rate (the CLI's: 1e-3)")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="share of the training tiles held out (the CLI's: 0.15)")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the training tiles")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    data = load_instance_data("nuclei", val_fraction=arguments.val_fraction, seed=arguments.seed)
    dense = load_mask_rcnn(arguments.dense)
    trunk = prune_channels(dense.trunk, importance="l1", target=arguments.target)
    pruned = MaskRCNN(dense.config, trunk, _copy(dense.box_head), _copy(dense.mask_head))
    share = flops(trunk, (128, 128)).macs / flops(dense.trunk, (128, 128)).macs
    before = evaluate_instances(dense, data, "test")
    print(f"split: {len(data.ids('train'))} train, {len(data.splits.get('val', []))} val, {len(data.ids('test'))} test tiles; trunk MACs {share:.3f} of dense")
    print(f"dense test: AP {before['ap']:.3f}  AP50 {before['ap50']:.3f}")
    test_by_epoch: list[dict] = []

    def score(model: MaskRCNN) -> float:
        test_by_epoch.append(evaluate_instances(model, data, "test"))  # analysis only: the choice is by validation
        return evaluate_instances(model, data, "val")["ap"] if data.splits.get("val") else 0.0

    def progress(record: dict, result, epochs: int) -> None:
        test = test_by_epoch[-1]
        print(f"epoch {record['epoch']:3d}/{epochs}  val AP {record['validation']:.3f}  test AP {test['ap']:.3f}  AP50 {test['ap50']:.3f}  "
              f"({record['seconds']:.1f}s)", flush=True)

    started = time.perf_counter()
    fit = fit_mask_rcnn(pruned, data, arguments.epochs, score=score, steps_per_epoch=arguments.steps_per_epoch,
                        learning_rate=arguments.learning_rate, seed=arguments.seed, on_epoch=progress)
    ap50 = np.array([t["ap50"] for t in test_by_epoch])
    ap = np.array([t["ap"] for t in test_by_epoch])
    chosen, best_test = fit.best_epoch - 1, int(np.argmax(ap50))
    print(f"fine-tuned {arguments.epochs} epochs in {time.perf_counter() - started:.0f} s (lr {arguments.learning_rate:g}, val fraction {arguments.val_fraction:g})")
    print(f"chosen by val AP: epoch {fit.best_epoch}, test AP {ap[chosen]:.3f}  AP50 {ap50[chosen]:.3f}")
    print(f"last epoch:       epoch {len(ap50)}, test AP {ap[-1]:.3f}  AP50 {ap50[-1]:.3f}")
    print(f"best test AP50:   epoch {best_test + 1}, test AP {ap[best_test]:.3f}  AP50 {ap50[best_test]:.3f}")
    print(f"mean test AP50 over the last 10 epochs {ap50[-10:].mean():.3f}")


def _copy(network):
    import keras

    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    return copy


if __name__ == "__main__":
    main()
