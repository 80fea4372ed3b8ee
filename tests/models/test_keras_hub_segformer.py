"""keras-hub SegFormer (MiT encoder) through segprune.prune, at a small random-weight configuration (no presets)."""

import keras
import numpy as np
import pytest

import segprune
from segprune.cost import flops
from segprune.graph.groups import plain_graph

pytest.importorskip("keras_hub")
from tests.graph.test_keras_hub import segformer  # after the skip: it imports keras_hub


@pytest.fixture(scope="module")
def model():
    return segformer()


@pytest.mark.parametrize("amount", [{"ratio": 0.5}, {"target": "flops=0.5"}], ids=["ratio", "flops"])
def test_segformer_prunes_keeps_its_output_and_round_trips(model, amount, tmp_path):
    result = segprune.prune(model, "l1", image_size=32, round_to=1, **amount)
    sample = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    output = result.model.predict(sample, verbose=0)
    assert output.shape == model.predict(sample, verbose=0).shape == (1, 32, 32, 3)
    dense_macs = flops(plain_graph(model), (32, 32)).macs  # the attention and Mix-FFN layers inside the composites count
    assert result.summary.macs_before == dense_macs
    assert result.summary.macs_after == flops(result.model, (32, 32)).macs
    assert result.summary.macs_ratio <= 0.5
    assert result.model.count_params() < 0.6 * model.count_params()
    path = tmp_path / "segformer.keras"
    result.model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(sample, verbose=0), output, atol=1e-5)
