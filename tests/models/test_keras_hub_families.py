"""Every keras-hub image segmentation, object detection and image backbone class (tiny random configurations):
it prunes, keeping its outputs' shapes and listing the layers it keeps whole (pinned), or it fails with the error
that names the layer segprune cannot handle.
Never a bare KeyError or AttributeError.

Not built here (their constructors need whole sub-models of their own): SAM, SAM3, D-FINE, MobileNetV5, DINOv3.
"""

import re

import keras
import numpy as np
import pytest

from segprune import prune_channels
from segprune.graph import UnsupportedLayerError, build_channel_graph

pytest.importorskip("keras_hub")
from tests.models.keras_hub_models import BUILDERS  # after the skip: it imports keras_hub

# What each class does today; a change either way should be seen and this table updated.
# Refused: a layer kept whole (pinned) must still be rebuilt from its config, and these keras-hub layers'
# configs do not round-trip.
UNSUPPORTED = {
    "DeiTBackbone": "'deit_encoder' \\(keras_hub.*DeiTEncoder\\) cannot write its config",
}
# Pruned around the layers segprune keeps whole (last name segment of each pin); every other class has none.
PINNED = {
    "SwinTransformerBackbone": ["blocks_0", "blocks_0"],  # every block: nothing is left to prune
    "RetinaNetBackbone": ["fpn"],
    "RetinaNetObjectDetector": ["fpn", "classification_head", "box_head", "cls_pred_P3", "cls_pred_P4", "box_pred_P3", "box_pred_P4"],
}
NOTHING_LEFT = {"SwinTransformerBackbone"}
SLOW = {"BASNetBackbone", "BASNetImageSegmenter"}  # a 48M-weight refinement head whatever the encoder


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.exhaustive) if name in SLOW else name for name in BUILDERS]
)
def test_keras_hub_class_prunes_or_names_the_layer(name):
    keras.utils.set_random_seed(0)
    model = BUILDERS[name]()
    if name in UNSUPPORTED:
        with pytest.raises(UnsupportedLayerError, match=UNSUPPORTED[name]):
            prune_channels(model, ratio=0.5, round_to=1)
        return
    graph = build_channel_graph(model)
    # Keras numbers automatic names per process (add_positional_embedding_1 once another test built a ViTDet)
    assert [_unnumbered(pin.name.rsplit("/", 1)[-1]) for pin in graph.pinned] == [_unnumbered(pin) for pin in PINNED.get(name, [])]
    if name in NOTHING_LEFT:
        assert graph.prunable_groups() == []
        return
    pruned = prune_channels(model, ratio=0.5, round_to=1)
    assert pruned.count_params() < model.count_params()
    sample = np.random.default_rng(0).random((1, *model.inputs[0].shape[1:])).astype(np.float32)
    # Called, not predicted: a detector's predict decodes boxes; the graph segprune prunes is its call's.
    expected = sorted(tuple(x.shape) for x in keras.tree.flatten(model(sample, training=False)))
    assert sorted(tuple(x.shape) for x in keras.tree.flatten(pruned(sample, training=False))) == expected


def _unnumbered(name: str) -> str:
    return re.sub(r"_\d+$", "", name)
