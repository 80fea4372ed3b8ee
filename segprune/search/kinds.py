"""What a search does differently for a Mask R-CNN than for a segmentation network, in one place.

A search narrows one functional graph. For a segmentation network that is the model; for a `MaskRCNN` it
is the trunk (encoder, FPN, shared RPN head): the budget prices the trunk's MACs, the final timing times the
trunk, and the RoI heads are carried along unchanged. A detector is saved and loaded with
`save_mask_rcnn` / `load_mask_rcnn` and scored by validation mask AP instead of Dice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import keras

from segprune._io import save_model
from segprune.instance_metrics import evaluate_instances
from segprune.metrics import evaluate
from segprune.models.loading import copy_model, load_model
from segprune.models.mask_rcnn import MaskRCNN, is_mask_rcnn_file, load_mask_rcnn, save_mask_rcnn
from segprune.search.space import shrink


def network(model: keras.Model) -> keras.Model:
    """The functional graph a search narrows, prices and times: a Mask R-CNN's trunk, or the model itself."""
    return model.trunk if isinstance(model, MaskRCNN) else model


def load_parent(path: str | Path) -> keras.Model:
    """A model saved in a search folder (the dense model, a greedy step), whichever kind it is."""
    return load_mask_rcnn(path) if is_mask_rcnn_file(path) else load_model(path)


def save_parent(model: keras.Model, path: str | Path) -> Path:
    return save_mask_rcnn(model, path) if isinstance(model, MaskRCNN) else save_model(model, path)


def copy_parent(model: keras.Model) -> keras.Model:
    """A copy with the same weights; a detector's trunk and heads are each copied."""
    if isinstance(model, MaskRCNN):
        return MaskRCNN(model.config, copy_model(model.trunk), copy_model(model.box_head), copy_model(model.mask_head))
    return copy_model(model)


def parent_score(model: keras.Model, data, split: str) -> float:
    """What candidates are compared by: validation mask AP for a detector, Dice for a segmentation network."""
    if isinstance(model, MaskRCNN):
        return float(evaluate_instances(model, data, split)["ap"])
    return float(evaluate(model, data, split).dice)


def shrink_parent(model: keras.Model, current: Mapping[str, int], wanted: Mapping[str, int], importance: str = "l1", data=None) -> keras.Model:
    """`space.shrink` for either kind: a detector's trunk is rebuilt narrower and its RoI heads are copied."""
    if isinstance(model, MaskRCNN):
        trunk = shrink(model.trunk, current, wanted, importance)  # the data-driven criteria read segmentation data
        return MaskRCNN(model.config, trunk, copy_model(model.box_head), copy_model(model.mask_head))
    return shrink(model, current, wanted, importance, data)
