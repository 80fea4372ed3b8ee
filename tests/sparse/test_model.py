"""A gated model trains its ungated weights exactly as plain training does (under every Keras backend).

JAX's trainer keeps the weights outside the variables during `fit`; a gated model that read its ungated
weights from the variables would compute every step after the first from the weights before `fit`.
"""

import keras
import numpy as np

from segprune.sparse.model import MASK, GateSpec, Site, SparseModel


def _model() -> keras.Model:
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="gated")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu")(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", name="ungated")(x)
    return keras.Model(inputs, outputs)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 8, 8, 2)).astype("float32"), rng.normal(size=(12, 8, 8, 1)).astype("float32")


def _fit(model: keras.Model, x, y) -> None:
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # three steps in one epoch


def test_training_with_an_all_ones_mask_equals_plain_training():
    keras.utils.set_random_seed(0)
    plain = _model()
    gated_base = keras.Model.from_config(plain.get_config())
    gated_base.set_weights(plain.get_weights())
    kernel_shape = tuple(gated_base.get_layer("gated").kernel.shape)
    sparse = SparseModel(gated_base, [GateSpec("g", MASK, kernel_shape)], [Site("gated", "kernel", "g")])
    x, y = _data()
    before = keras.ops.convert_to_numpy(plain.get_layer("ungated").kernel)

    _fit(plain, x, y)
    _fit(sparse, x, y)

    trained = keras.ops.convert_to_numpy(plain.get_layer("ungated").kernel)
    assert np.abs(trained - before).max() > 1e-3  # training moved the ungated kernel
    for layer in ("gated", "bn", "ungated"):
        for expected, actual in zip(plain.get_layer(layer).get_weights(), gated_base.get_layer(layer).get_weights()):
            np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5, err_msg=layer)


def test_a_rebuilt_gated_model_saves_without_a_warning_and_reloads_its_gates(tmp_path):
    """The per-epoch checkpoint saves a copy rebuilt from the config, never called: Keras warned that it was not built."""
    import warnings

    from segprune.backend._keras_internals import rebuilt_copy

    base = _model()
    kernel_shape = tuple(base.get_layer("gated").kernel.shape)
    sparse = SparseModel(base, [GateSpec("g", MASK, kernel_shape)], [Site("gated", "kernel", "g")])
    sparse.gate_variables["g"].assign(np.zeros(kernel_shape, "float32"))
    copy = rebuilt_copy(sparse)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        copy.save(tmp_path / "gated.keras")
    reloaded = keras.saving.load_model(tmp_path / "gated.keras")
    assert not keras.ops.convert_to_numpy(reloaded.gate_variables["g"]).any()
