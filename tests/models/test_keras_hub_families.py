"""Every keras-hub image segmentation, object detection and image backbone class (tiny random configurations):
it prunes, keeping its outputs' shapes, or it fails with the error that names the layer segprune cannot handle.
Never a bare KeyError or AttributeError.

Not built here (their constructors need whole sub-models of their own): SAM, SAM3, D-FINE, MobileNetV5, DINOv3.
"""

import keras
import numpy as np
import pytest

from segprune import prune_channels
from segprune.graph import UnsupportedLayerError

pytest.importorskip("keras_hub")
from tests.models.keras_hub_models import BUILDERS  # after the skip: it imports keras_hub

# What each class does today; a change either way should be seen and this table updated.
UNSUPPORTED = {
    "ViTBackbone": "'vit_patching_and_embedding' of class .*ViTPatchingAndEmbedding has no channel handler",
    "DINOV2Backbone": "'attention' \\(MultiHeadAttention\\) is called with tensors that are not positional",
    "DeiTBackbone": "'deit_encoder' \\(DeiTEncoder\\) could not be traced",
    "SwinTransformerBackbone": "'blocks_0' \\(SwinTransformerBlock\\) could not be traced",
    "ViTDetBackbone": "\\(MultiHeadAttentionWithRelativePE\\) could not be traced",
    "HGNetV2Backbone": "'embedder_stem4_identity_lab' \\(keras.src.layers.core.identity.Identity\\) cannot write its config",
    "RetinaNetBackbone": "'fpn' \\(FeaturePyramid\\) is called with tensors that are not positional",
    "RetinaNetObjectDetector": "'fpn' \\(FeaturePyramid\\) is called with tensors that are not positional",
}
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
    pruned = prune_channels(model, ratio=0.5, round_to=1)
    assert pruned.count_params() < model.count_params()
    sample = np.random.default_rng(0).random((1, *model.inputs[0].shape[1:])).astype(np.float32)
    expected = keras.tree.map_structure(lambda x: x.shape, model.predict(sample, verbose=0))
    assert keras.tree.map_structure(lambda x: x.shape, pruned.predict(sample, verbose=0)) == expected
