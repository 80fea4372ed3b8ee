"""`train`: CE + Dice loss, Adam with cosine decay, validation Dice, early stopping, checkpoints, distillation."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from segprune import defaults
from segprune._io import save_model
from segprune.backend.determinism import seed_random
from segprune.data.dataset import SegmentationDataset
from segprune.data.pipeline import BatchConfig, TrainingBatches
from segprune.data.python import DataLike, as_dataset
from segprune.inference import fixed_input_size, input_channels, predict_maps
from segprune.losses import CrossEntropyDiceLoss, DistillationLoss, soft_predictions
from segprune.metrics import check_fits_data, evaluate
from segprune.models.outputs import OutputKind, output_kind
from segprune.training.checkpoint import load_state, save_state, state_path
from segprune.training.result import EpochRecord, EpochReporter, TrainResult, training_from_record, training_record


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained.

    Attributes:
        learning_rate: Peak Adam learning rate; cosine-decayed to `final_learning_rate_fraction` of it.
        final_learning_rate_fraction: Where the cosine schedule ends, as a fraction of the peak.
        patience: Epochs without a better validation Dice before stopping (None never stops early); while every
            validation Dice so far is 0, an epoch with a new lowest training loss counts as better.
        dice_weight: Weight of the soft Dice term next to cross-entropy.
        batches: How training batches are cut (size, patches, augmentation, seed).
        validation_split: Split scored after every epoch; the best-scoring weights are kept.
    """

    learning_rate: float = defaults.LEARNING_RATE
    final_learning_rate_fraction: float = 0.01
    patience: int | None = 15
    dice_weight: float = 1.0
    batches: BatchConfig = field(default_factory=BatchConfig)
    validation_split: str = "val"

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}.")


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation while fine-tuning: the student also learns the teacher's soft masks.

    Attributes:
        temperature: Softens both models' outputs before they are compared (1 compares the masks as they
            are; higher values weigh the teacher's uncertainty at object borders more).
        weight: Share of the distillation term in the loss, in [0, 1]; the ground-truth term gets the rest
            (0 is plain training).
    """

    temperature: float = defaults.DISTILL_TEMPERATURE
    weight: float = defaults.DISTILL_WEIGHT

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight is the distillation term's share of the loss, in [0, 1]; got {self.weight}.")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the run stopped, its last good epoch kept.

    Attributes:
        epoch: The (1-based) epoch whose loss was not finite.
        learning_rate: The peak learning rate it trained with.
    """

    def __init__(self, message: str, epoch: int, learning_rate: float) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.learning_rate = learning_rate


def train(
    model: keras.Model,
    data: DataLike,
    epochs: int = 40,
    config: TrainConfig | None = None,
    checkpoint_path: str | Path | None = None,
    on_epoch: EpochReporter | None = None,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    keep_best_from_epoch: int = 1,
    teacher: keras.Model | None = None,
    distill: DistillConfig | None = None,
) -> TrainResult:
    """Trains `model` in place on the `train` split and keeps the weights with the best validation Dice.

    Each epoch ends by scoring the validation split over all its pixels. A better score replaces the
    checkpoint (written atomically, when `checkpoint_path` is given); `config.patience` epochs without
    improvement stop the run. Ctrl-C stops it too, cleanly: the best weights are restored either way.
    With a checkpoint path, the full training state (weights, Adam moments, schedule position, history)
    is also kept beside it until the run finishes, and `resume=True` continues an interrupted run from
    its last finished epoch.

    Args:
        model: A functional segmentation model following segprune's output convention (or logits).
        data: The dataset; its `train` and validation splits are used. Arrays and batches as `model.fit` takes them
            are read once with the model's class count and split as a folder would be (`segprune.data.as_dataset`).
        epochs: Maximum number of epochs.
        config: Optimiser, loss and batching settings.
        checkpoint_path: A `.keras` path that always holds the best model so far.
        on_epoch: Called after every epoch with (record, result so far, epochs) for progress display.
        resume: Continue the interrupted run whose state lies beside `checkpoint_path` (a fresh start
            when there is none). Without it, an existing state file is an error rather than overwritten.
        callbacks: Further Keras callbacks for `fit` (sparse pruning updates its masks through one).
        keep_best_from_epoch: Epochs before this one are never kept as the best and never stop the run
            early (a pruning schedule that is still raising sparsity must not be undone by them).
        teacher: A trained model (typically the dense model a pruned `model` came from) whose soft masks
            `model` also learns (knowledge distillation). It predicts each training image once, in
            inference mode, before training starts; its weights never change.
        distill: Temperature and weight of distillation (defaults to `DistillConfig()` when a teacher is given).

    Returns:
        A `TrainResult` with the per-epoch history.

    Raises:
        TrainingDiverged: An epoch's loss was NaN or infinite. Training stops at the end of that epoch with the
            best weights restored; the checkpoint and the state of the last good epoch stay, so the run can be
            resumed with a lower `config.learning_rate`.

    Example:
        >>> model = segprune.models.unet(num_classes=4, input_channels=3)
        >>> result = segprune.train(model, segprune.data.load_data("synthetic"), epochs=5)
        >>> result.best_val_dice > 0
        True
        >>> pruned = segprune.prune_channels(model, importance="l1", target="flops=0.5")
        >>> segprune.train(pruned, data, epochs=10, teacher=model, distill=DistillConfig(temperature=2.0))
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    config = config or TrainConfig()
    if not isinstance(data, SegmentationDataset):
        data = as_dataset(data, num_classes=output_kind(model).num_classes)
    kind = check_fits_data(model, data)
    if distill is not None and teacher is None:
        raise ValueError("distill= needs the teacher= model whose soft masks the student learns (the dense model).")
    loss: keras.losses.Loss = CrossEntropyDiceLoss(kind, data.ignore_index, config.dice_weight)
    soft_targets = None
    if teacher is not None:
        distill = distill or DistillConfig()
        if input_channels(teacher) != input_channels(model):
            raise ValueError(
                f"Teacher {teacher.name!r} takes {input_channels(teacher)} input channel(s) but the student takes "
                f"{input_channels(model)}; use the dense model the student was pruned from as the teacher."
            )
        soft_targets = teacher_soft_targets(teacher, data, "train", kind, distill.temperature)
        loss = DistillationLoss(kind, data.ignore_index, config.dice_weight, distill.temperature, distill.weight)
    batches = TrainingBatches(data, "train", input_channels(model), config.batches, soft_targets=soft_targets, patch=fixed_input_size(model))
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=epochs * batches.num_batches, alpha=config.final_learning_rate_fraction
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=loss,
    )
    tracker = _BestWeights(data, config, checkpoint_path, on_epoch, epochs, batches.num_batches * config.batches.batch_size)
    tracker.keep_best_from_epoch = keep_best_from_epoch
    tracker.set_model(model)  # fit sets it too, but a run killed after its last epoch resumes without fitting
    initial_epoch = _restore_if_resuming(model, tracker, checkpoint_path, resume)
    batches.epoch = initial_epoch
    started = time.perf_counter()
    try:
        if initial_epoch < epochs:
            model.fit(batches, epochs=epochs, initial_epoch=initial_epoch, callbacks=[*callbacks, tracker], verbose=0)
    except KeyboardInterrupt:
        tracker.result.interrupted = True
    tracker.restore_best()
    tracker.result.seconds = time.perf_counter() - started
    if tracker.diverged_loss is not None:
        raise _diverged(tracker, config, checkpoint_path)
    if checkpoint_path is not None and not tracker.result.interrupted:
        state_path(checkpoint_path).unlink(missing_ok=True)
    return tracker.result


def _diverged(tracker: _BestWeights, config: TrainConfig, checkpoint_path) -> TrainingDiverged:
    """The error for a loss that became non-finite: where the last good state is and how to resume with a lower rate."""
    epoch, rate = len(tracker.result.history) + 1, config.learning_rate
    lower = f"{rate / 10:g}"
    if tracker.result.history and checkpoint_path is not None:
        kept = (
            f"The state of epoch {epoch - 1}, the last with a finite loss, is kept in {str(state_path(checkpoint_path))!r} and the best "
            f"model (epoch {tracker.result.best_epoch}) in {str(checkpoint_path)!r}. Resume with a lower learning rate: the same command "
            f"with --resume --learning-rate {lower} (in Python: resume=True, config=TrainConfig(learning_rate={lower}))."
        )
    elif tracker.result.history:
        kept = f"The model holds the weights of epoch {tracker.result.best_epoch}, the best one. Train on with a lower learning rate, e.g. {lower}."
    else:
        kept = f"No epoch ended with a finite loss; start again with a lower learning rate, e.g. {lower}."
    return TrainingDiverged(
        f"The training loss became {'NaN' if math.isnan(tracker.diverged_loss) else 'infinite'} in epoch {epoch} (peak learning rate {rate:g}); training stopped. {kept}",
        epoch, rate,
    )


def steps_per_epoch(model: keras.Model, data: SegmentationDataset, config: TrainConfig) -> int:
    """How many batches one epoch of `train(model, data, config=config)` runs."""
    return TrainingBatches(data, "train", input_channels(model), config.batches, patch=fixed_input_size(model)).num_batches


def teacher_soft_targets(
    teacher: keras.Model, data: SegmentationDataset, split: str, student_kind: OutputKind, temperature: float
) -> dict[str, np.ndarray]:
    """The teacher's soft masks of every image of `split`, predicted once each, in inference mode.

    They ride with the masks through the training patches' crops, flips and rotations (the teacher sees
    each image without the brightness and contrast jitter), so distillation costs one forward pass per
    training image rather than one per batch. Stored as float16: (height, width, channels) per image.

    Example:
        >>> targets = teacher_soft_targets(dense, data, "train", output_kind(pruned), temperature=2.0)
    """
    teacher_kind = output_kind(teacher)
    if teacher_kind.channels != student_kind.channels:
        raise ValueError(
            f"Teacher {teacher.name!r} outputs {teacher_kind.channels} channel(s) but the student outputs "
            f"{student_kind.channels}; distillation compares the two masks channel by channel, so both must "
            "follow the same output convention (the pruned model and the dense model it came from do)."
        )
    targets = {}
    for sample_id, image, _ in data.samples(split):
        outputs = predict_maps(teacher, [image])[0][None]
        soft = keras.ops.convert_to_numpy(soft_predictions(outputs, teacher_kind, temperature))
        targets[sample_id] = soft[0].astype(np.float16)
    return targets


def _restore_if_resuming(model: keras.Model, tracker: _BestWeights, checkpoint_path, resume: bool) -> int:
    """Loads the saved state when resuming; returns the number of epochs already done."""
    if checkpoint_path is None:
        if resume:
            raise ValueError("resume=True needs the checkpoint_path of the interrupted run.")
        return 0
    path = state_path(checkpoint_path)
    if not path.exists():
        return 0
    if not resume:
        raise ValueError(
            f"An interrupted training run left its state at {str(path)!r}. Resume it (resume=True, or "
            "--resume on the command line) or delete that file to start over."
        )
    best_weights, record = load_state(path, model)
    tracker.best_weights = best_weights or None
    saved = training_from_record(record)  # how long it took and why it ended are this run's to say
    tracker.result.history, tracker.result.best_epoch = saved.history, saved.best_epoch
    tracker.result.best_val_dice, tracker.result.images_seen = saved.best_val_dice, saved.images_seen
    return len(tracker.result.history)


class _BestWeights(keras.callbacks.Callback):
    """Validation Dice after each epoch, best-weight tracking, checkpointing and early stopping."""

    def __init__(self, data, config: TrainConfig, checkpoint_path, on_epoch, epochs: int, images_per_epoch: int):
        super().__init__()
        self.data = data
        self.config = config
        self.checkpoint_path = checkpoint_path
        self.on_epoch = on_epoch
        self.epochs = epochs
        self.images_per_epoch = images_per_epoch
        self.result = TrainResult()
        self.best_weights: list[np.ndarray] | None = None
        self.epoch_started = 0.0
        self.keep_best_from_epoch = 1
        self.diverged_loss: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        # Each epoch's randomness (dropout, Keras' seed generators) depends on (seed, epoch) only, so an
        # interrupted run that resumes at this epoch continues exactly as an uninterrupted one would.
        seed_random(self.config.batches.seed * 100_003 + epoch)
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):  # its weights are garbage: neither recorded nor saved, the last good state stays
            self.diverged_loss = loss
            self.model.stop_training = True
            return
        seconds = time.perf_counter() - self.epoch_started
        val_dice = evaluate(self.model, self.data, self.config.validation_split).dice
        record = EpochRecord(epoch + 1, float((logs or {}).get("loss", float("nan"))), val_dice, seconds)
        result = self.result
        result.history.append(record)
        result.images_seen += self.images_per_epoch
        eligible = epoch + 1 >= self.keep_best_from_epoch
        if eligible and (val_dice > result.best_val_dice or self.best_weights is None or self._learning_blind(record)):
            result.best_val_dice, result.best_epoch = val_dice, epoch + 1
            self.best_weights = self.model.get_weights()
            if self.checkpoint_path is not None:
                save_model(self.model, self.checkpoint_path)
        elif eligible and self.config.patience is not None and epoch + 1 - result.best_epoch >= self.config.patience:
            result.stopped_early = True
            self.model.stop_training = True
        if self.checkpoint_path is not None:
            save_state(state_path(self.checkpoint_path), self.model, self.best_weights, training_record(result))
        if self.on_epoch is not None:
            self.on_epoch(record, result, self.epochs)

    def _learning_blind(self, record: EpochRecord) -> bool:
        """Whether this epoch reached the lowest training loss while no epoch yet has put a pixel in the right
        class (validation Dice 0 throughout, as a narrow pruned model often starts): Dice cannot tell such
        epochs apart, so the falling loss counts as progress, for the best weights and for patience alike."""
        if record.val_dice > 0 or self.result.best_val_dice > 0:
            return False
        earlier = [old.loss for old in self.result.history[:-1] if old.epoch >= self.keep_best_from_epoch]
        return bool(earlier) and record.loss < min(earlier)

    def restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
