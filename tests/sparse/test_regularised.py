"""L1 and L0 (hard-concrete) sparsification: trajectories, exact final sparsity, deterministic gates."""

import keras
import numpy as np
import pytest

from segprune.data import BatchConfig
from segprune.models import unet
from segprune.sparse import l0_sparsify, l1_sparsify, sparsity_summary, strip
from segprune.sparse.gates import deterministic, probability_open
from segprune.sparse.regularised import with_weight_gates
from segprune.sparse.sparsity import effective_sparsity
from segprune.training import TrainConfig

CONFIG = TrainConfig(patience=None, batches=BatchConfig(batch_size=4, image_size=32))  # the data are 32x32: no padding to 128


def test_hard_concrete_gate_formulas():
    log_alpha = keras.ops.convert_to_tensor(np.array([-10.0, 0.0, 10.0], "float32"))
    gate = keras.ops.convert_to_numpy(deterministic(log_alpha))
    np.testing.assert_allclose(gate, [0.0, 0.5, 1.0], atol=1e-6)
    # P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta)), with beta = 2/3, gamma = -0.1, zeta = 1.1
    expected = 1 / (1 + np.exp(-(0.0 - (2 / 3) * np.log(0.1 / 1.1))))
    assert keras.ops.convert_to_numpy(probability_open(log_alpha))[1] == pytest.approx(expected, rel=1e-5)


def test_gates_are_deterministic_at_inference_and_strip_keeps_the_function(data16):
    model = unet(num_classes=data16.num_classes, input_channels=1, base_filters=8, depth=2)
    gated = with_weight_gates(model, strength=1.0)
    rng = np.random.default_rng(0)
    for variable in gated.gate_variables.values():
        variable.assign(rng.normal(0.0, 0.4, size=variable.shape).astype("float32"))  # log-alpha ~ N(0, 4)
    x = np.stack([data16.load(sample_id)[0][..., :1] for sample_id in data16.ids("train")[:2]]).astype("float32")
    first, second = gated(x, training=False), gated(x, training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(second))
    sampled = [keras.ops.convert_to_numpy(gated(x, training=True)) for _ in range(2)]
    assert not np.array_equal(*sampled), "training-time gates are stochastic"
    plain = strip(gated)  # after the training calls, which moved the BatchNorm statistics
    np.testing.assert_allclose(plain.predict(x, verbose=0), keras.ops.convert_to_numpy(gated(x, training=False)), atol=1e-5)
    assert 0.05 < sparsity_summary(plain, input_shape=(32, 32)).sparsity < 0.6  # some gates are exactly closed


@pytest.mark.slow
def test_l0_penalty_closes_gates_during_training(data16):
    model = unet(num_classes=data16.num_classes, input_channels=1, base_filters=8, depth=2)
    gated = with_weight_gates(model, strength=50.0)
    for variable in gated.gate_variables.values():
        variable.assign(np.zeros(variable.shape, "float32"))  # log-alpha 0: undecided gates
    gated.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    pairs = [data16.load(sample_id) for sample_id in data16.ids("train")[:8]]
    x = np.stack([image[..., :1] for image, _ in pairs]).astype("float32")
    y = keras.utils.to_categorical(np.stack([mask for _, mask in pairs]), data16.num_classes)
    closed = []
    for _ in range(3):
        gated.fit(x, y, batch_size=4, epochs=2, verbose=0)
        closed.append(effective_sparsity(gated))
    assert closed[-1] > 0.2 and closed == sorted(closed)


@pytest.mark.slow
def test_l0_sparsify_ends_at_least_at_the_requested_sparsity(data16):
    model = unet(num_classes=data16.num_classes, input_channels=1, base_filters=8, depth=2)
    result = l0_sparsify(model, data16, 0.5, epochs=2, strength=20.0, recovery_epochs=1, config=CONFIG)
    assert [step["epoch"] for step in result.trajectory] == [1, 2, 3]
    assert result.sparsity >= 0.5 - 1e-3
    assert sparsity_summary(result.model, input_shape=(32, 32)).sparsity == pytest.approx(result.sparsity)
    assert any("L0 gates closed" in note for note in result.notes)


@pytest.mark.slow
def test_l1_records_its_trajectory_and_ends_at_the_exact_sparsity(data16):
    model = unet(num_classes=data16.num_classes, input_channels=1, base_filters=8, depth=2)
    result = l1_sparsify(model, data16, 0.6, epochs=2, strength=1e-3, recovery_epochs=1, config=CONFIG)
    assert [step["epoch"] for step in result.trajectory] == [1, 2, 3]
    assert all(0.0 <= step["val_dice"] <= 1.0 for step in result.trajectory)
    assert result.trajectory[1]["sparsity"] > result.trajectory[0]["sparsity"] * 0.99
    assert result.sparsity == pytest.approx(0.6, abs=1e-3)
    assert sparsity_summary(result.model, input_shape=(32, 32)).sparsity == pytest.approx(result.sparsity)
    assert not result.model.losses, "the L1 penalty is not left on the returned model"


@pytest.mark.parametrize("method", [l1_sparsify, l0_sparsify])
def test_bad_strength_is_explained(data16, method):
    with pytest.raises(ValueError, match="strength"):
        method(unet(num_classes=data16.num_classes, input_channels=1, base_filters=8, depth=2), data16, 0.5, strength=0.0)
