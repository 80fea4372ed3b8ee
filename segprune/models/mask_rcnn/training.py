"""Training a Mask R-CNN on an instance dataset: random batches, augmentation, Adam with cosine decay."""

from __future__ import annotations

import functools
from collections.abc import Callable

import keras
import numpy as np

from segprune.data.instances import InstanceDataset, augment_instances
from segprune.models.mask_rcnn._gradients import losses_and_gradients
from segprune.models.mask_rcnn.model import MaskRCNN


def train_mask_rcnn(
    model: MaskRCNN,
    dataset: InstanceDataset,
    steps: int,
    batch_size: int = 4,
    learning_rate: float = 1e-3,
    split: str = "train",
    augment: bool = True,
    seed: int = 0,
    on_step: Callable[[int, dict], None] | None = None,
    validate: Callable[[MaskRCNN], float] | None = None,
    validate_every: int = 0,
) -> list[dict[str, float]]:
    """Trains `model` for `steps` batches of whole images from `split`; returns the losses of every step.

    With `validate` (for example the validation mask AP) called every `validate_every` steps and at the end,
    the weights of the best-scoring check are restored when training ends; each record of a checked step
    then holds a `validation` entry.

    Example:
        >>> history = train_mask_rcnn(model, instance_dataset("nuclei-dsb2018"), steps=200)
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}.")
    ids = dataset.ids(split)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05, warmup_target=None)
    optimizer = keras.optimizers.Adam(learning_rate=schedule, clipnorm=5.0)
    rng = np.random.default_rng(seed)
    variables = model.trainable_variables
    history = []
    best_score, best_weights = float("-inf"), None
    for step in range(steps):
        batch = [dataset.load(sample_id) for sample_id in rng.choice(ids, batch_size, replace=len(ids) < batch_size)]
        if augment:
            batch = [augment_instances(image, instances, rng) for image, instances in batch]
        images = np.stack([image for image, _ in batch])
        truths = [instances for _, instances in batch]
        losses, gradients = losses_and_gradients(functools.partial(model.training_losses, images, truths, rng), variables)
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        record = {name: float(value) for name, value in losses.items()}
        if validate is not None and ((validate_every and (step + 1) % validate_every == 0) or step + 1 == steps):
            record["validation"] = float(validate(model))
            if record["validation"] > best_score:
                best_score, best_weights = record["validation"], [keras.ops.convert_to_numpy(v) for v in model.weights]
        history.append(record)
        if on_step is not None:
            on_step(step, record)
    if best_weights is not None:
        for variable, value in zip(model.weights, best_weights):
            variable.assign(value)
    return history
