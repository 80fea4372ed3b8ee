"""Mask R-CNN trained from scratch on the 12 nuclei training tiles: mask AP, AP50, AP75 and DSB score on the test tiles.

Trains the default `mask_rcnn()` (random init, no downloaded weights) with augmentation, then evaluates the
4 test tiles. AP is computed with detections down to score 0.05 (COCO practice); the DSB score takes the
default detections (score >= 0.5), overlapping masks resolved by score.

    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/mask_rcnn_nuclei.py [--steps 600] [--batch-size 4]

On the shared 2-core machine a step took 1.0-1.2 s (batch 4): 600 steps are 11-12 minutes. Measured there
(2026-11-28, seed 0, --eval-every 200; the run was stopped by its 660 s timeout at step ~560): after 200
steps mask AP50 0.859, AP 0.482, DSB 0.422; after 400 steps AP50 0.830, AP 0.579, AP75 0.753, DSB 0.521
(U-Net + watershed: AP50 0.652, DSB 0.462; classical watershed: AP50 0.561, DSB 0.298).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
from scipy import ndimage
from skimage import feature, segmentation

import segprune  # noqa: F401  (first: it quiets TensorFlow's start-up logging)
from segprune.classical import watershed_segment
from segprune.cost import flops
from segprune.data.instances import instance_dataset, instances_from_labels
from segprune.instance_metrics import mask_ap, mean_dsb_score
from segprune.models.mask_rcnn import MaskRCNN, load_mask_rcnn, mask_rcnn, save_mask_rcnn, train_mask_rcnn
from segprune.structured.oneshot import prune_channels

NUCLEI = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "nuclei-dsb2018"
UNET = Path(__file__).resolve().parents[1].parent / "notes" / "models" / "unet-nuclei.keras"


def evaluate(model: MaskRCNN, data, split: str) -> dict[str, float]:
    images, truths = zip(*(data.load(sample_id) for sample_id in data.ids(split)))
    batch = np.stack(images)
    low_threshold = MaskRCNN(dataclasses.replace(model.config, detection_min_score=0.05), model.trunk, model.box_head, model.mask_head)
    scores = mask_ap(truths, low_threshold.detect(batch))
    detections = model.detect(batch)
    scores["dsb"] = mean_dsb_score(truths, detections)
    scores["detections_per_tile"] = float(np.mean([len(d) for d in detections]))
    scores["objects_per_tile"] = float(np.mean([len(t) for t in truths]))
    return scores


def labels_to_prediction(labels: np.ndarray) -> SimpleNamespace:
    """A label image as predictions for mask AP, every object with score 1 (the baselines have no scores)."""
    instances = instances_from_labels(labels)
    return SimpleNamespace(masks=instances.masks, scores=np.ones(len(instances)), class_ids=instances.class_ids)


def split_foreground(foreground: np.ndarray, min_distance: int = 5) -> np.ndarray:
    """A semantic foreground split into objects by a watershed on its distance transform (as classical watershed does)."""
    if not foreground.any():
        return np.zeros(foreground.shape, np.int32)
    distance = ndimage.distance_transform_edt(foreground)
    peaks = feature.peak_local_max(distance, min_distance=min_distance, labels=ndimage.label(foreground)[0], exclude_border=False)
    markers = np.zeros(foreground.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-distance, markers, mask=foreground, watershed_line=True).astype(np.int32)


def baselines(data, split: str, unet_path: Path | None) -> dict[str, dict[str, float]]:
    """Instance figures of classical watershed and, given a trained U-Net, of U-Net + watershed."""
    images, truths = zip(*(data.load(sample_id) for sample_id in data.ids(split)))
    rows = {"classical watershed": [watershed_segment(image) for image in images]}
    if unet_path is not None and unet_path.exists():
        unet = keras.saving.load_model(unet_path, compile=False)
        probabilities = unet.predict(np.stack(images), verbose=0)[..., 0]
        rows[f"U-Net ({unet_path.name}) + watershed"] = [split_foreground(p > 0.5) for p in probabilities]
    figures = {}
    for name, labels in rows.items():
        predictions = [labels_to_prediction(label) for label in labels]
        figures[name] = {**mask_ap(truths, predictions), "dsb": mean_dsb_score(truths, predictions)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(NUCLEI))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unet", default=str(UNET), help="a trained nuclei U-Net for the U-Net + watershed baseline")
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument("--save", default=None, help="save the trained detector here (.keras)")
    parser.add_argument("--dense", default=None, help="a trained detector (.keras) to evaluate and prune instead of training one")
    parser.add_argument("--prune", default=None, help="prune the trunk to a budget such as flops=0.5 (l1), then fine-tune")
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=0, help="also evaluate the test split every N steps (0: only at the end)")
    arguments = parser.parse_args()

    keras.utils.set_random_seed(arguments.seed)
    data = instance_dataset(arguments.data)
    for name, figures in baselines(data, "test", Path(arguments.unet)).items():
        print(f"{name}: " + "  ".join(f"{key} {value:.3f}" for key, value in figures.items()))
    if arguments.baselines_only:
        return
    if arguments.dense:
        model = load_mask_rcnn(arguments.dense)
        print(f"loaded {arguments.dense}")
    else:
        model = mask_rcnn(num_classes=data.num_classes, input_channels=data.image_channels)
        train(model, data, arguments, arguments.steps, arguments.learning_rate)
        if arguments.save:
            save_mask_rcnn(model, arguments.save)
    macs = flops(model.trunk, (128, 128)).macs
    print(f"parameters {model.count_params():,} (trunk {model.trunk.count_params():,}); trunk MACs per 128x128 tile {macs / 1e6:.1f} M")
    figures = evaluate(model, data, "test")
    print("test: " + "  ".join(f"{name} {value:.3f}" for name, value in figures.items()))
    if not arguments.prune:
        return
    pruned_trunk = prune_channels(model.trunk, importance="l1", target=arguments.prune)
    pruned = MaskRCNN(model.config, pruned_trunk, copy_of(model.box_head), copy_of(model.mask_head))
    dense_macs, pruned_macs = (flops(m.trunk, (256, 256)).macs for m in (model, pruned))
    print(f"pruned trunk ({arguments.prune}, l1): MACs at 256x256 {dense_macs / 1e6:.1f} M -> {pruned_macs / 1e6:.1f} M ({pruned_macs / dense_macs:.2f})")
    print("pruned, before fine-tuning: " + "  ".join(f"{k} {v:.3f}" for k, v in evaluate(pruned, data, "test").items()))
    train(pruned, data, arguments, arguments.finetune_steps, arguments.learning_rate / 3)
    print("pruned, fine-tuned: " + "  ".join(f"{k} {v:.3f}" for k, v in evaluate(pruned, data, "test").items()))
    images = np.stack([data.load(sample_id)[0] for sample_id in data.ids("test")])
    timings = {"dense detect": [], "pruned detect": [], "dense trunk": [], "pruned trunk": []}
    for _ in range(7):  # interleaved, so that machine load hits all alike
        for name, detector in (("dense", model), ("pruned", pruned)):
            start = time.perf_counter()
            detector.detect(images)
            timings[f"{name} detect"].append(time.perf_counter() - start)
            start = time.perf_counter()
            detector.trunk(images, training=False)
            timings[f"{name} trunk"].append(time.perf_counter() - start)
    print("Keras on the 4 test tiles, median of 7: " + "  ".join(f"{k} {1000 * np.median(v):.0f} ms" for k, v in timings.items()))


def copy_of(network: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    return copy


def train(model: MaskRCNN, data, arguments, steps: int, learning_rate: float) -> None:
    start = time.perf_counter()

    def progress(step: int, losses: dict[str, float]) -> None:
        done = step + 1
        if done % 25 == 0 or done == steps:
            shown = " ".join(f"{name} {value:.3f}" for name, value in losses.items())
            print(f"step {done:4d}  {time.perf_counter() - start:6.0f} s  {shown}", flush=True)
        if arguments.eval_every and done % arguments.eval_every == 0 and done != steps:
            figures = evaluate(model, data, "test")
            print(f"  test after {done} steps: " + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)

    train_mask_rcnn(model, data, steps=steps, batch_size=arguments.batch_size, learning_rate=learning_rate, seed=arguments.seed, on_step=progress)
    print(f"trained {steps} steps (batch {arguments.batch_size}) in {time.perf_counter() - start:.0f} s on this machine's CPUs")

if __name__ == "__main__":
    main()
