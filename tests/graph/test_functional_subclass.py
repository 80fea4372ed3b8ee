"""keras.Model subclasses built functionally (like keras-hub's backbones) prune as plain functional graphs."""

import keras
import numpy as np
import pytest

from segprune.graph import build_channel_graph, remove_channels
from segprune.models import ModelFileError
from tests.graph.harness import assert_prunes_exactly


class TinyBackbone(keras.Model):
    """Configured by its constructor's arguments, which insists on its widths (keras-hub's ResNet wants 64)."""

    def __init__(self, filters=8, **kwargs):
        if filters != 8:
            raise ValueError("TinyBackbone needs 8 filters")
        inputs = keras.Input((None, None, 3))
        x = keras.layers.Conv2D(filters, 3, padding="same", name="stem")(inputs)
        x = keras.layers.BatchNormalization(name="stem_bn")(x)
        shortcut = keras.layers.ReLU()(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", name="block")(shortcut)
        x = keras.layers.Add()([shortcut, keras.layers.BatchNormalization(name="block_bn")(x)])
        outputs = keras.layers.Conv2D(12, 1, name="features")(x)
        super().__init__(inputs, outputs, **kwargs)
        self.filters = filters

    def get_config(self):
        return {"filters": self.filters, "name": self.name}


class TinySegmenter(keras.Model):
    """A task model around the backbone, itself a functional subclass."""

    def __init__(self, num_classes=2, **kwargs):
        inputs = keras.Input((None, None, 3))
        features = TinyBackbone(name="backbone")(inputs)
        x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="decoder")(features)
        outputs = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
        super().__init__(inputs, outputs, **kwargs)
        self.num_classes = num_classes

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name}


@pytest.mark.parametrize("build", [TinyBackbone, TinySegmenter])
def test_functional_subclass_prunes_exactly_into_a_plain_model(build, tmp_path):
    model = build()
    pruned = assert_prunes_exactly(model, (16, 16, 3))
    assert type(pruned) is not type(model) and not any(isinstance(layer, TinyBackbone) for layer in pruned.layers)
    path = tmp_path / "pruned.keras"
    pruned.save(path)  # loads with no custom objects: the subclasses are gone
    sample = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(sample, verbose=0), pruned.predict(sample, verbose=0), atol=1e-6)


def test_nested_backbone_channels_are_found_by_qualified_name():
    graph = build_channel_graph(TinySegmenter())
    assert graph.group_of_layer("backbone/stem") is graph.group_of_layer("backbone/block")
    pruned = remove_channels(graph, graph.group_of_layer("backbone/stem").classes[:3])
    assert pruned.get_layer("backbone").get_layer("stem").filters == 5


def test_a_model_with_its_own_call_is_a_named_error():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    model = Subclassed()
    model(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ModelFileError, match="subclassed model \\(Subclassed\\)"):
        build_channel_graph(model)
