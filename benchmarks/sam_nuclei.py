"""A small Segment Anything model trained on the nuclei tiles with box prompts, then its image encoder pruned.

Prints, per budget, the test mask IoU per box prompt (mean with a 95% bootstrap interval over prompts; one box per
nucleus, from the instance labels), the image encoder's MACs and its ONNX Runtime latency (fp32, 1x128x128, one
thread, medians of interleaved runs), with and without a short fine-tune of the pruned SAM on the training boxes (and the dense SAM trained as
much longer, since the dense model is itself short of converged at these step counts).

keras-hub's SAM has no `fit` (it raises), and segprune prunes a SAM without fine-tuning; the training here is a
plain Keras model over the SAM's own inputs and outputs: a sigmoid cross-entropy and soft Dice on the first
(best) low-resolution mask of each box, resized to the mask's 64x64.

    KERAS_BACKEND=jax python benchmarks/sam_nuclei.py [--steps 800] [--finetune-steps 150]

(JAX: under TensorFlow 2.x here, training this graph aborted the process with a heap corruption.)
"""

from __future__ import annotations

import argparse
import time

import keras
import keras_hub
import numpy as np

from segprune import prune
from segprune.cost import flops
from segprune.data.instances import load_instance_data
from segprune.models.sam import image_encoder
from segprune.runtime.latency import time_models

SIZE, PATCH, EMBEDDING = 128, 8, 32
GRID = SIZE // PATCH


def small_sam() -> keras.Model:
    encoder = keras_hub.models.ViTDetBackbone(
        hidden_size=64, num_layers=4, intermediate_dim=256, num_heads=4, global_attention_layer_indices=[1, 3], image_shape=(SIZE, SIZE, 3),
        patch_size=PATCH, num_output_channels=EMBEDDING, window_size=8,
    )
    prompt_encoder = keras_hub.layers.SAMPromptEncoder(
        hidden_size=EMBEDDING, image_embedding_size=(GRID, GRID), input_image_size=(SIZE, SIZE), mask_in_channels=4
    )
    mask_decoder = keras_hub.layers.SAMMaskDecoder(
        num_layers=2, hidden_size=EMBEDDING, intermediate_dim=128, num_heads=4, embedding_dim=EMBEDDING, num_multimask_outputs=3,
        iou_head_depth=2, iou_head_hidden_dim=32,
    )
    backbone = keras_hub.models.SAMBackbone(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder)
    return keras_hub.models.SAMImageSegmenter(backbone=backbone)


def box_prompts(data, split: str):
    """(images, boxes (N, 1, 2, 2) as (x, y) corners, masks (N, 64, 64)) with one entry per nucleus."""
    images, boxes, masks = [], [], []
    for _, image, instances in data.samples(split):
        rgb = np.repeat(image[..., :1], 3, axis=-1)
        for box, mask in zip(instances.boxes, instances.masks):
            y1, x1, y2, x2 = box
            images.append(rgb)
            boxes.append([[[x1, y1], [x2, y2]]])
            masks.append(mask.reshape(4 * GRID, SIZE // (4 * GRID), 4 * GRID, SIZE // (4 * GRID)).mean(axis=(1, 3)) >= 0.5)
    return np.array(images, np.float32), np.array(boxes, np.float32), np.array(masks, np.float32)


def inputs(images: np.ndarray, boxes: np.ndarray) -> dict:
    count = len(images)
    return {
        "images": images, "boxes": boxes, "points": np.zeros((count, 0, 2), np.float32), "labels": np.zeros((count, 0), np.float32),
        "masks": np.zeros((count, 0, 4 * GRID, 4 * GRID, 1), np.float32),
    }


def loss(target, logits):
    logits = logits[:, 0]
    cross_entropy = keras.ops.mean(keras.losses.binary_crossentropy(target[..., None], logits[..., None], from_logits=True))
    probability = keras.ops.sigmoid(logits)
    dice = 1 - (2 * keras.ops.sum(probability * target, axis=(1, 2)) + 1) / (keras.ops.sum(probability + target, axis=(1, 2)) + 1)
    return cross_entropy + keras.ops.mean(dice)


def train(sam: keras.Model, prompts, steps: int, learning_rate: float, seed: int = 0) -> float:
    """Trains `sam` in place (its layers, through a plain model over the same graph); returns the seconds taken."""
    plain = keras.Model(sam.input, sam.output["masks"])
    plain.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    images, boxes, masks = prompts
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(steps):
        batch = rng.choice(len(images), 16)
        plain.train_on_batch(inputs(images[batch], boxes[batch]), masks[batch])
    return time.perf_counter() - started


def mask_iou(sam: keras.Model, prompts) -> np.ndarray:
    images, boxes, masks = prompts
    logits = np.concatenate([keras.ops.convert_to_numpy(sam(inputs(images[i : i + 16], boxes[i : i + 16]))["masks"][:, 0]) for i in range(0, len(images), 16)])
    predicted = logits > 0
    union = np.logical_or(predicted, masks > 0).sum(axis=(1, 2))
    return np.logical_and(predicted, masks > 0).sum(axis=(1, 2)) / np.maximum(union, 1)


def interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    means = np.random.default_rng(seed).choice(values, (1000, len(values))).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _saved(model: keras.Model) -> str:
    import tempfile

    path = tempfile.mkdtemp(prefix="sam-nuclei-") + "/dense.keras"
    model.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--finetune-steps", type=int, default=150)
    parser.add_argument("--budgets", default="0.5,0.25")
    arguments = parser.parse_args()
    keras.utils.set_random_seed(0)
    data = load_instance_data("nuclei", val_fraction=0.15)
    training, test = box_prompts(data, "train"), box_prompts(data, "test")
    sam = small_sam()
    seconds = train(sam, training, arguments.steps, 1e-3)
    print(f"trained {arguments.steps} steps of 16 boxes in {seconds:.0f}s; {len(training[0])} training boxes, {len(test[0])} test boxes on 4 test tiles")
    rows = [("dense", sam)]
    longer = keras.saving.load_model(_saved(sam))  # the dense SAM trained as long as the fine-tuned pruned ones, for a fair row
    train(longer, training, arguments.finetune_steps, 3e-4, seed=1)
    rows.append((f"dense + {arguments.finetune_steps} steps", longer))
    for budget in [float(b) for b in arguments.budgets.split(",")]:
        pruned = prune(sam, "l1", target=f"flops={budget}", round_to=1, progress=False).model
        rows.append((f"flops={budget:g}", pruned))
        tuned = prune(sam, "l1", target=f"flops={budget}", round_to=1, progress=False).model
        train(tuned, training, arguments.finetune_steps, 3e-4, seed=1)
        rows.append((f"flops={budget:g} + {arguments.finetune_steps} steps", tuned))
    latencies = time_models([image_encoder(model) for _, model in rows], SIZE, threads=1)
    dense_macs = flops(image_encoder(sam), (SIZE, SIZE)).macs
    print(f"| model | test mask IoU per box (95% interval, {len(test[0])} boxes) | encoder MMACs (share) | encoder ms, ONNX Runtime fp32 |")
    print("|---|---|---|---|")
    for (name, model), milliseconds in zip(rows, latencies):
        scores = mask_iou(model, test)
        low, high = interval(scores)
        macs = flops(image_encoder(model), (SIZE, SIZE)).macs
        print(f"| {name} | {scores.mean():.3f} [{low:.3f}, {high:.3f}] | {macs / 1e6:.1f} ({macs / dense_macs:.3f}) | {milliseconds:.2f} |")


if __name__ == "__main__":
    main()
