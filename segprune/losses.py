"""Segmentation losses on `keras.ops`: cross-entropy plus soft Dice skipping an ignore index, and distillation."""

from __future__ import annotations

import keras
from keras import ops

from segprune.models.outputs import OutputKind

_SMOOTH = 1.0
_EPSILON = 1e-7


class CrossEntropyDiceLoss(keras.losses.Loss):
    """Cross-entropy (binary or categorical, by the model's output) plus `dice_weight` times soft Dice loss.

    `y_true` holds integer class indices of shape (batch, H, W) or (batch, H, W, 1). Pixels equal to
    `ignore_index` count in neither term. The Dice term is the mean over foreground classes of
    1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1), summed over the whole batch.

    Example:
        >>> loss = CrossEntropyDiceLoss(output_kind(model))
        >>> model.compile(optimizer="adam", loss=loss)
    """

    def __init__(self, kind: OutputKind, ignore_index: int | None = None, dice_weight: float = 1.0, name: str = "ce_dice"):
        super().__init__(name=name)
        self.kind = kind
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == 4:
            labels = ops.squeeze(labels, axis=-1)
        y_pred = ops.cast(y_pred, "float32")
        if self.ignore_index is None:
            valid = ops.ones_like(labels, dtype="float32")
        else:
            valid = ops.cast(ops.not_equal(labels, self.ignore_index), "float32")
            labels = ops.where(ops.not_equal(labels, self.ignore_index), labels, ops.zeros_like(labels))

        if self.kind.channels == 1:
            scores = y_pred[..., 0]
            targets = ops.cast(labels, "float32")
            cross_entropy = keras.losses.binary_crossentropy(
                targets[..., None], scores[..., None], from_logits=self.kind.from_logits
            )
            probabilities = ops.sigmoid(scores) if self.kind.from_logits else scores
            probabilities, one_hot = probabilities[..., None], targets[..., None]
        else:
            cross_entropy = keras.losses.sparse_categorical_crossentropy(
                labels, y_pred, from_logits=self.kind.from_logits
            )
            probabilities = ops.softmax(y_pred, axis=-1) if self.kind.from_logits else y_pred
            one_hot = ops.one_hot(labels, self.kind.channels)
            probabilities, one_hot = probabilities[..., 1:], one_hot[..., 1:]

        cross_entropy = ops.sum(cross_entropy * valid) / ops.maximum(ops.sum(valid), 1.0)
        weights = valid[..., None]
        intersection = ops.sum(probabilities * one_hot * weights, axis=(0, 1, 2))
        totals = ops.sum(probabilities * weights, axis=(0, 1, 2)) + ops.sum(one_hot * weights, axis=(0, 1, 2))
        dice_loss = 1.0 - ops.mean((2.0 * intersection + _SMOOTH) / (totals + _SMOOTH))
        return cross_entropy + self.dice_weight * dice_loss


def soft_predictions(outputs, kind: OutputKind, temperature: float):
    """A model's outputs softened by `temperature`: sigmoid or softmax of its logits divided by it.

    Probabilities are turned back into logits first (log-odds for one sigmoid channel, log-probabilities
    for a softmax), so a temperature of 1 returns the probabilities themselves.

    Example:
        >>> soft_predictions(teacher(images), output_kind(teacher), temperature=2.0)
    """
    outputs = ops.cast(outputs, "float32")
    if kind.from_logits:
        logits = outputs
    else:
        probabilities = ops.clip(outputs, _EPSILON, 1.0 - _EPSILON)
        logits = ops.log(probabilities)
        if kind.channels == 1:
            logits = logits - ops.log(1.0 - probabilities)
    if kind.channels == 1:
        return ops.sigmoid(logits / temperature)
    return ops.softmax(logits / temperature, axis=-1)


class DistillationLoss(keras.losses.Loss):
    """Ground truth and a teacher's soft masks: `(1 - weight) * task + weight * temperature**2 * KL`.

    `y_true` packs both targets along the last axis: channel 0 the class indices, the rest the teacher's
    outputs already softened by `soft_predictions` at the same temperature (1 channel for a sigmoid
    output, one per class for a softmax). The task term is `CrossEntropyDiceLoss`; the distillation term is
    the per-pixel Kullback-Leibler divergence from the teacher's soft mask to the student's (Bernoulli for
    one channel, categorical otherwise), averaged over pixels that are not `ignore_index`. The
    `temperature**2` factor keeps its gradients on the task term's scale (Hinton et al., 2015).

    Example:
        >>> loss = DistillationLoss(output_kind(student), temperature=2.0, weight=0.5)
    """

    def __init__(
        self,
        kind: OutputKind,
        ignore_index: int | None = None,
        dice_weight: float = 1.0,
        temperature: float = 2.0,
        weight: float = 0.5,
        name: str = "distillation",
    ):
        super().__init__(name=name)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight is the distillation term's share of the loss, in [0, 1]; got {weight}.")
        self.kind = kind
        self.ignore_index = ignore_index
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.task = CrossEntropyDiceLoss(kind, ignore_index, dice_weight)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        labels = ops.cast(ops.round(y_true[..., 0]), "int32")
        teacher = ops.clip(y_true[..., 1:], _EPSILON, 1.0 - _EPSILON)
        student = ops.clip(soft_predictions(y_pred, self.kind, self.temperature), _EPSILON, 1.0 - _EPSILON)
        divergence = teacher * (ops.log(teacher) - ops.log(student))
        if self.kind.channels == 1:
            divergence = divergence + (1.0 - teacher) * (ops.log(1.0 - teacher) - ops.log(1.0 - student))
        divergence = ops.sum(divergence, axis=-1)
        if self.ignore_index is None:
            valid = ops.ones_like(divergence)
        else:
            valid = ops.cast(ops.not_equal(labels, self.ignore_index), "float32")
        divergence = ops.sum(divergence * valid) / ops.maximum(ops.sum(valid), 1.0)
        task = self.task.call(labels, y_pred)
        return (1.0 - self.weight) * task + self.weight * self.temperature**2 * divergence
