"""A model with a NaN or an infinity in one weight is refused before any work, naming the layer and the weight."""

import keras
import numpy as np
import pytest

import segprune
from segprune.models import load_model
from segprune.models.checks import NonFiniteWeightsError, check_finite_weights


def tiny_model() -> keras.Model:
    inputs = keras.Input((None, None, 1))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="encoder_conv")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(features)
    return keras.Model(inputs, outputs)


def poisoned(value: float, layer: str = "encoder_conv") -> keras.Model:
    model = tiny_model()
    kernel, bias = model.get_layer(layer).get_weights()
    kernel.flat[3] = value
    model.get_layer(layer).set_weights([kernel, bias])
    return model


def test_finite_weights_pass():
    check_finite_weights(tiny_model())


@pytest.mark.parametrize("value,kind", [(np.nan, "1 NaN"), (np.inf, "1 infinite"), (-np.inf, "1 infinite")])
def test_load_refuses_a_non_finite_kernel_by_layer_and_weight(tmp_path, value, kind):
    path = tmp_path / "poisoned.keras"
    poisoned(value).save(path)
    with pytest.raises(NonFiniteWeightsError, match=rf"poisoned.keras.*layer 'encoder_conv' weight 'kernel' \({kind} of 36 values\)") as error:
        load_model(path)
    assert "head" not in str(error.value) and "\n" not in str(error.value)


def test_the_api_refuses_an_in_memory_model_before_any_work():
    model = poisoned(np.nan, layer="head")
    with pytest.raises(NonFiniteWeightsError, match="layer 'head' weight 'kernel'"):
        segprune.prune(model, "l1", ratio=0.5, progress=False)
    with pytest.raises(NonFiniteWeightsError, match="layer 'head' weight 'kernel'"):
        segprune.sparsify(model, "magnitude", sparsity=0.5, data=object(), progress=False)



@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_weights_are_checked_too(dtype):
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, dtype=dtype, name="head")(inputs))
    check_finite_weights(model)
    kernel = model.get_layer("head").kernel
    assert keras.backend.standardize_dtype(kernel.dtype) == dtype
    kernel.assign(np.array([np.nan, np.inf, 1.0]).reshape(1, 1, 1, 3))
    with pytest.raises(NonFiniteWeightsError, match=r"layer 'head' weight 'kernel' \(1 NaN and 1 infinite of 3 values\)"):
        check_finite_weights(model)
