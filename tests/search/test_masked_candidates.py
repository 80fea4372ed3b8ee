"""A candidate evaluated as its masked parent is the narrower model: same outputs after the short fine-tune."""

import numpy as np
import pytest

from segprune.data import BatchConfig
from segprune.graph.groups import build_channel_graph
from segprune.graph.surgery import remove_channels
from segprune.models import unet
from segprune.search.evaluation import CandidateEvaluator, CandidateSettings
from segprune.search.space import ChannelSpace

SETTINGS = CandidateSettings(finetune_steps=3, batches=BatchConfig(batch_size=2, image_size=32))


@pytest.fixture(scope="module")
def model(data):
    return unet(num_classes=data.num_classes, input_channels=1, base_filters=8, depth=1)


def _narrowed(model):
    space = ChannelSpace(build_channel_graph(model, input_shape=(32, 32)), round_to=4)
    dense = space.dense()
    keys = list(dense)
    return dense, {**dense, keys[0]: space.widths(keys[0])[0], keys[-1]: space.widths(keys[-1])[0]}


def test_the_built_candidate_computes_what_the_masked_parent_computes(data, model):
    dense, wanted = _narrowed(model)
    evaluator = CandidateEvaluator(model, data, SETTINGS)
    score = evaluator.score(dense, wanted, seed=5)
    built = evaluator.build()
    images = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(built.predict(images, verbose=0), evaluator.model.predict(images, verbose=0), atol=1e-5)
    assert built.count_params() < model.count_params()
    removed = {int(c) for c in evaluator.removed}
    assert len(removed) == sum(dense[k] - wanted[k] for k in dense)
    assert 0.0 <= score <= 1.0


def test_fine_tuning_the_masked_parent_trains_the_narrower_model_exactly(data, model):
    """Same seed, same start: the masked parent and the narrower model itself end with the same weights."""
    dense, wanted = _narrowed(model)
    evaluator = CandidateEvaluator(model, data, SETTINGS)
    evaluator.score(dense, wanted, seed=7)  # fills evaluator.removed: the channels the criterion drops
    narrower = remove_channels(build_channel_graph(model), evaluator.removed)
    reference = CandidateEvaluator(narrower, data, SETTINGS)
    reference.score({k: wanted[k] for k in dense}, {k: wanted[k] for k in dense}, seed=7)
    images = np.random.default_rng(1).random((2, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(
        evaluator.build().predict(images, verbose=0), reference.model.predict(images, verbose=0), atol=1e-4
    )


def test_the_short_fine_tune_trains_every_candidate(data, model):
    evaluator = CandidateEvaluator(model, data, SETTINGS)
    dense, wanted = _narrowed(model)
    for seed in (1, 2):  # the second candidate starts from a reset optimizer: it must train too
        evaluator.score(dense, wanted, seed=seed)
        moved = [np.abs(v.numpy() - model.get_layer(v.path.split("/")[0]).get_weights()[0]).max()
                 for v in evaluator.model.trainable_variables if v.path.endswith("kernel")]
        assert max(moved) > 1e-3, f"candidate {seed}: no kernel moved in {SETTINGS.finetune_steps} fine-tune steps"


def test_scores_do_not_depend_on_what_was_evaluated_before(data, model):
    dense, wanted = _narrowed(model)
    evaluator = CandidateEvaluator(model, data, SETTINGS)
    first = evaluator.score(dense, wanted, seed=3)
    evaluator.score(dense, dense, seed=4)
    assert evaluator.score(dense, wanted, seed=3) == pytest.approx(first, abs=1e-6)


@pytest.mark.parametrize("steps", [3, 33])  # fewer, and more, than one pass over the training batches (32)
def test_a_candidate_takes_exactly_its_fine_tune_steps(data, model, steps):
    settings = CandidateSettings(finetune_steps=steps, batches=BatchConfig(batch_size=2, image_size=32))
    evaluator = CandidateEvaluator(model, data, settings)
    dense, wanted = _narrowed(model)
    evaluator.score(dense, wanted, seed=1)
    assert int(evaluator.model.optimizer.iterations.numpy()) == steps
