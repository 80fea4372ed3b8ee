"""Segmentation losses on `keras.ops`: cross-entropy plus soft Dice, skipping an ignore index."""

from __future__ import annotations

import keras
from keras import ops

from segprune.models.outputs import OutputKind

_SMOOTH = 1.0


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
