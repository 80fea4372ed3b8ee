"""Channel-level regularised pruning: L0 channel gates (exactness of gate folding and removal) and slimming."""

import keras
import numpy as np
import pytest

from segprune import flops
from segprune.data import BatchConfig, synthetic_dataset
from segprune.graph.groups import build_channel_graph
from segprune.graph.surgery import remove_channels
from segprune.models import mobilenet_unet, unet
from segprune.sparse.model import SparseModel, strip
from segprune.structured.regularised import channel_gates, l0_channel_prune, slimming_prune
from segprune.training import TrainConfig
from tests.graph.harness import randomize_weights

CONFIG = TrainConfig(patience=None, batches=BatchConfig(batch_size=4, image_size=32))  # the data are 32x32: no padding to 128


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(num_train=16, num_val=4, num_test=4, image_size=32, channels=3)


ARCHITECTURES = {
    "unet-transpose": lambda: unet(num_classes=3, input_channels=3, base_filters=16, depth=2),
    "unet-bilinear": lambda: unet(num_classes=3, input_channels=3, base_filters=16, depth=2, upsampling="bilinear"),
    "mobilenet-unet": lambda: mobilenet_unet(num_classes=3, alpha=0.35),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_closed_gates_are_removed_exactly_and_open_gates_fold_into_the_weights(name):
    model = ARCHITECTURES[name]()
    randomize_weights(model, seed=1)
    graph = build_channel_graph(model, input_shape=(64, 64))
    gates, sites, group_of_gate, _ = channel_gates(graph)
    sparse = SparseModel(model, gates, sites)
    rng = np.random.default_rng(0)
    closed = []
    for gate_name, group in group_of_gate.items():
        log_alpha = rng.choice([-8.0, 8.0, 0.5], size=group.size, p=[0.3, 0.5, 0.2])
        log_alpha[np.flatnonzero(group.prunable)[0]] = 8.0  # every group keeps a channel
        log_alpha[~group.prunable] = 8.0
        sparse.gate_variables[gate_name].assign((log_alpha / sparse.log_alpha_scale).astype("float32"))
        closed += [c for c, value in zip(group.classes, log_alpha) if value < 0]
    x = np.random.default_rng(2).uniform(size=(2, 64, 64, 3)).astype("float32")
    gated_output = keras.ops.convert_to_numpy(sparse(x, training=False))
    plain = strip(sparse)
    np.testing.assert_allclose(plain.predict(x, verbose=0), gated_output, atol=1e-5)
    plain_graph = build_channel_graph(plain, input_shape=(64, 64))
    pruned = remove_channels(plain_graph, closed)
    assert pruned.count_params() < plain.count_params()
    np.testing.assert_allclose(pruned.predict(x, verbose=0), gated_output, atol=1e-5)


def test_gates_weigh_channels_by_the_macs_they_carry():
    graph = build_channel_graph(unet(base_filters=16, depth=2), input_shape=(64, 64))
    gates, _, group_of_gate, skipped = channel_gates(graph)
    assert not skipped
    cost = {gate.name: gate.cost[0] for gate in gates}
    by_producer = {group.producers[0]: cost[name] for name, group in group_of_gate.items()}
    assert by_producer["enc0a_conv"] > by_producer["mid_a_conv"], "full-resolution channels cost more"


@pytest.mark.slow
@pytest.mark.parametrize("method", [l0_channel_prune, slimming_prune])
def test_regularised_channel_pruning_meets_its_target(data, method):
    model = unet(num_classes=data.num_classes, input_channels=3, base_filters=16, depth=2)
    dense_graph = {"graph": build_channel_graph(model, input_shape=(256, 256))} if method is l0_channel_prune else {}
    result = method(model, data, "flops=0.5", epochs=2, finetune_epochs=1, config=CONFIG, **dense_graph)
    measured = flops(result.model, (256, 256)).macs / flops(model, (256, 256)).macs
    assert measured == pytest.approx(result.resource_fraction, abs=1e-9)
    assert 0.3 < measured <= 0.5
    assert result.model.output_shape == model.output_shape
    assert [step["epoch"] for step in result.trajectory] == [1, 2]
    assert not result.model.losses, "no penalty is left on the pruned model"
