"""Model files that need code of their own: --custom-objects MODULE and the explicit --unsafe-lambda opt-in."""

import sys

import keras
import numpy as np
import pytest

from segprune.cli import main
from segprune.cli._common import custom_objects

LAYERS = '''
import keras


class Doubling(keras.layers.Layer):
    def call(self, inputs):
        return inputs * 2.0
'''


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    (tmp_path / "user_layers_for_segprune.py").write_text(LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_layers_for_segprune"
    sys.modules.pop("user_layers_for_segprune", None)


def _segmenter(middle: keras.layers.Layer) -> keras.Model:
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = middle(x)
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))


def test_a_model_with_a_custom_layer_loads_through_the_named_module(custom_module, tmp_path, make_folder_dataset, capsys):
    module = __import__(custom_module)
    path = tmp_path / "custom.keras"
    _segmenter(module.Doubling()).save(path)
    root = make_folder_dataset(count=4)
    assert main(["evaluate", str(path), "--data", str(root)]) == 2  # without the module Keras cannot rebuild it
    capsys.readouterr()
    assert main(["evaluate", str(path), "--data", str(root), "--custom-objects", custom_module, "--json"]) == 0
    assert '"dice"' in capsys.readouterr().out


def test_lambda_layers_load_only_with_the_explicit_opt_in(tmp_path, make_folder_dataset, capsys):
    path = tmp_path / "lambda.keras"
    _segmenter(keras.layers.Lambda(lambda x: x * 2.0)).save(path)
    root = make_folder_dataset(count=4)
    assert main(["evaluate", str(path), "--data", str(root)]) == 2
    assert "safe_mode=False" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--data", str(root), "--unsafe-lambda", "--json"]) == 0


def test_a_module_that_cannot_be_imported_is_named():
    with pytest.raises(ValueError, match="cannot be imported"):
        custom_objects("no_such_module_for_segprune")
    assert custom_objects(None) is None
    assert "ones" in custom_objects("numpy") and custom_objects("numpy")["ones"] is np.ones
