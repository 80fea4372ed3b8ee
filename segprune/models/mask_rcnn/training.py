"""Training a Mask R-CNN on an instance dataset: random batches, augmentation, Adam with cosine decay."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from segprune.data.instances import InstanceDataset, augment_instances
from segprune.models.mask_rcnn._gradients import losses_and_gradients
from segprune.models.mask_rcnn.model import MaskRCNN
from segprune.models.mask_rcnn.saving import save_mask_rcnn


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


@dataclass
class FitResult:
    """What `fit_mask_rcnn` returns.

    Attributes:
        history: One record per epoch: `epoch` (from 1), the mean of each loss, `validation` and `seconds`.
        best_epoch: The epoch whose weights the model holds at the end (and the checkpoint, when given).
        best_score: Its validation score.
        seconds: Wall-clock time of the whole run.
    """

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("-inf")
    seconds: float = 0.0


EpochCallback = Callable[[dict, FitResult, int], None]


def fit_mask_rcnn(
    model: MaskRCNN,
    dataset: InstanceDataset,
    epochs: int,
    score: Callable[[MaskRCNN], float],
    steps_per_epoch: int | None = None,
    batch_size: int = 4,
    learning_rate: float = 3e-3,
    seed: int = 0,
    checkpoint_path: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Trains in epochs (one pass over the training images by default), scoring each; the best epoch is kept and saved.

    The model ends holding the weights of the epoch with the highest `score` (for example the validation
    mask AP); with `checkpoint_path` that epoch is also saved there (atomically, rewritten at each better
    epoch), so nothing is written before the first epoch has been scored.

    Args:
        model: The detector, trained in place.
        dataset: Its `train` split is trained on.
        epochs: Number of epochs.
        score: Higher is better; called with the model after every epoch.
        steps_per_epoch: Batches per epoch (drawn at random, with augmentation); None: as many as one pass over
            the training split takes.
        batch_size: Images per batch.
        learning_rate: Peak Adam learning rate (cosine decay over the whole run).
        seed: Seed of batches and augmentation.
        checkpoint_path: Where the best epoch is saved (`.keras`), or None.
        on_epoch: Called after every epoch with its record, the result so far and `epochs`.

    Example:
        >>> result = fit_mask_rcnn(model, data, epochs=12, score=lambda m: evaluate_instances(m, data, "val")["ap"])
    """
    if steps_per_epoch is None:
        steps_per_epoch = -(-len(dataset.ids("train")) // batch_size)
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1, got epochs={epochs}, steps_per_epoch={steps_per_epoch}.")
    result = FitResult()
    started = epoch_started = time.perf_counter()
    losses: list[dict[str, float]] = []

    def validate(current: MaskRCNN) -> float:
        value = float(score(current))
        if value > result.best_score:
            result.best_score, result.best_epoch = value, len(result.history) + 1
            if checkpoint_path is not None:
                save_mask_rcnn(current, checkpoint_path)
        return value

    def on_step(step: int, record: dict) -> None:
        nonlocal epoch_started
        losses.append({name: value for name, value in record.items() if name != "validation"})
        if "validation" not in record:
            return
        now = time.perf_counter()
        epoch = {"epoch": len(result.history) + 1}
        epoch.update({name: float(np.mean([entry[name] for entry in losses])) for name in losses[0]})
        epoch.update(validation=record["validation"], seconds=now - epoch_started)
        result.history.append(epoch)
        losses.clear()
        epoch_started = now
        if on_epoch is not None:
            on_epoch(epoch, result, epochs)

    train_mask_rcnn(
        model, dataset, steps=epochs * steps_per_epoch, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
        on_step=on_step, validate=validate, validate_every=steps_per_epoch,
    )
    result.seconds = time.perf_counter() - started
    return result
