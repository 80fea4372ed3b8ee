"""Greedy and random search: budgets met, logs written, determinism, parallel workers."""

import json

import keras
import pytest

from segprune import flops
from segprune.data import BatchConfig, load_data
from segprune.graph.groups import build_channel_graph
from segprune.models import unet
from segprune.search.budget import Budget, measure
from segprune.search.evaluation import CandidateSettings
from segprune.search.greedy import FALLBACK_PROPOSALS, family, greedy_search, proposals
from segprune.search.kinds import network_timer
from segprune.search.random_search import random_search
from segprune.search.settings import SearchSettings

SETTINGS = SearchSettings(target="flops=0.5", image_size=64, final_epochs=0, time_result=False)  # timing: its own test
CANDIDATES = CandidateSettings(finetune_steps=0, batches=BatchConfig(batch_size=4, image_size=32))  # inherited weights: candidates' fine-tuning is tests/search/test_masked_candidates.py's
TRAINED = CandidateSettings(finetune_steps=2, batches=BatchConfig(batch_size=4, image_size=32))  # where the fine-tune's determinism is the point


def _log(folder):
    return [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_greedy_meets_the_budget_step_by_step_and_times_the_result_it_returns(data16, model, model_graph, tmp_path, monkeypatch):
    timed = []

    def fake_measure(dense, pruned, settings):
        timed.append((dense, pruned))
        return {"dense_ms": 10.0, "pruned_ms": 4.0, "speedup": 2.5, "latency_fraction": 0.4}

    monkeypatch.setattr("segprune.search.greedy.measure", fake_measure)
    seen = []
    settings = SearchSettings(**{**SETTINGS.__dict__, "time_result": True})
    result = greedy_search(model, data16, tmp_path, settings, CANDIDATES, iterations=2, on_candidate=lambda r, b: seen.append(r), graph=model_graph)
    measured = flops(result.model, (64, 64)).macs / flops(model, (64, 64)).macs
    assert measured == pytest.approx(result.resource_fraction) and measured <= 0.5
    records = _log(tmp_path)
    steps = [r for r in records if r["type"] == "step"]
    assert [s["share"] for s in steps] == sorted((s["share"] for s in steps), reverse=True)
    assert len(seen) == result.candidates == sum(r["type"] == "candidate" for r in records)
    assert timed == [(model, result.model)], "the dense model and the returned model are timed once, together"
    assert records[-1]["type"] == "done" and records[-1]["measured"] == result.measured == fake_measure(model, result.model, settings)
    kept = sorted(str(p) for p in (tmp_path / "iterations").rglob("*.keras"))
    assert kept == sorted(step["model"] for step in family(tmp_path)), "the chosen model of every step is kept, no other"


def test_steps_keep_half_of_each_group_and_a_step_no_group_can_make_shrinks_instead_of_collapsing_groups(model, model_graph, tmp_path):
    budget = Budget(model_graph, SETTINGS, tmp_path, network_timer(model, SETTINGS))
    dense = budget.space.dense()
    reachable = proposals(budget, dense, 0.8 * budget.dense_cost)
    assert reachable and all(budget.cost(p) <= 0.8 * budget.dense_cost for p in reachable.values())
    assert all(p[key] >= dense[key] // 2 for key, p in reachable.items()), "no group loses more than half its width in a step"
    found = proposals(budget, dense, 0.5 * budget.dense_cost)  # no single group halves the MACs of this U-Net
    assert len(found) == FALLBACK_PROPOSALS
    for key, proposal in found.items():
        assert {k for k in dense if proposal[k] != dense[k]} == {key}, "a proposal narrows its own group only"
        assert proposal[key] >= dense[key] // 2, f"{key} fell from {dense[key]} to {proposal[key]} in one step"
    assert found["mid_a_conv"]["mid_a_conv"] == 16, "the 32-wide group goes to half, not to its narrowest width 8"
    costs = sorted(budget.cost(p) for p in found.values())
    assert costs[-1] < budget.dense_cost, "the shrunken step still cuts"


@pytest.mark.slow
@pytest.mark.exhaustive  # make test-all: random search also runs killed-and-resumed (test_resume) and from the CLI
def test_random_search_is_deterministic_meets_the_budget_and_stops_at_the_floor(data16, model, model_graph, tmp_path):
    first = random_search(model, data16, tmp_path / "a", SETTINGS, TRAINED, num_candidates=2, graph=model_graph)
    second = random_search(model, data16, tmp_path / "b", SETTINGS, TRAINED, num_candidates=2, graph=model_graph)
    assert first.config == second.config
    assert [r["score"] for r in _log(tmp_path / "a")[1:3]] == [r["score"] for r in _log(tmp_path / "b")[1:3]]
    for record in _log(tmp_path / "a")[1:3]:
        assert 0.85 * 0.5 <= record["share"] <= 0.5
    assert _log(tmp_path / "a")[-1]["measured"] == first.measured == {}, "time_result=False times nothing"
    floor = random_search(model, data16, tmp_path / "c", SETTINGS, CANDIDATES, num_candidates=2, accuracy_floor=0.0, graph=model_graph)
    assert floor.candidates == 1 and "accuracy floor" in floor.notes[0]


def test_an_existing_log_is_never_overwritten(data16, model, model_graph, tmp_path):
    random_search(model, data16, tmp_path, SETTINGS, CANDIDATES, num_candidates=1, graph=model_graph)
    with pytest.raises(ValueError, match="--resume"):
        random_search(model, data16, tmp_path, SETTINGS, CANDIDATES, num_candidates=1, graph=model_graph)
    with pytest.raises(ValueError, match="other settings"):
        random_search(model, data16, tmp_path, SETTINGS, CANDIDATES, num_candidates=2, resume=True, graph=model_graph)


@pytest.mark.slow
@pytest.mark.exhaustive  # two worker processes start TensorFlow (~12 s): make test-all, beside the Ray tests
def test_two_workers_find_what_one_finds(make_folder_dataset, tmp_path):
    root = make_folder_dataset(count=8)
    folder_data = load_data(str(root))
    model = unet(num_classes=2, input_channels=1, base_filters=16, depth=1)
    graph = build_channel_graph(model, input_shape=SETTINGS.image_size)
    one = random_search(model, folder_data, tmp_path / "one", SETTINGS, TRAINED, num_candidates=2, graph=graph)
    two = random_search(model, folder_data, tmp_path / "two", SearchSettings(**{**SETTINGS.__dict__, "workers": 2}), TRAINED,
                        num_candidates=2, data_source=str(root), graph=graph)  # one candidate per worker
    assert one.config == two.config
    scores = lambda folder: [r["score"] for r in _log(folder) if r["type"] == "candidate"]  # noqa: E731
    assert scores(tmp_path / "one") == pytest.approx(scores(tmp_path / "two"), abs=1e-6)


@pytest.mark.slow
def test_a_latency_search_that_times_over_budget_searches_on(data16, model, model_graph, tmp_path, monkeypatch):
    timings = iter([0.9, 0.5, 0.5])  # timed fractions: over the 0.85 budget at first, then under

    def fake_measure(dense, pruned, settings):
        fraction = next(timings)
        return {"dense_ms": 10.0, "pruned_ms": 10.0 * fraction, "speedup": 1 / fraction, "latency_fraction": fraction}

    monkeypatch.setattr("segprune.search.greedy.measure", fake_measure)
    # A dense time below the layers' sum leaves no untimed remainder: the estimate is the table alone.
    monkeypatch.setattr("segprune.search.kinds.time_models", lambda models, image_size, threads, *runtime_settings: [1e-6, 1e-7])
    settings = SearchSettings(target="latency=0.85", image_size=64, final_epochs=0)
    result = greedy_search(model, data16, tmp_path, settings, CANDIDATES, iterations=2, graph=model_graph)
    rechecks = [r for r in _log(tmp_path) if r["type"] == "recheck"]
    assert len(rechecks) == 1 and rechecks[0]["timed"] == 0.9
    assert result.resource_fraction <= 0.85 * 0.85 / 0.9 + 1e-9, "the table limit was tightened by the miss"
    assert "timed at 0.900" in result.notes[0] and result.latency_source.startswith("per-layer ONNX Runtime")


def test_a_latency_target_below_what_the_narrowest_model_times_is_refused_up_front(data16, model, model_graph, tmp_path, monkeypatch):
    monkeypatch.setattr("segprune.search.kinds.time_models", lambda models, image_size, threads, *runtime_settings: [10.0, 4.0])  # floor 0.4
    settings = SearchSettings(target="latency=0.3", image_size=64, final_epochs=0)
    with pytest.raises(ValueError, match="narrowest configuration .* times at 0.400"):
        greedy_search(model, data16, tmp_path, settings, CANDIDATES, graph=model_graph)


def test_measure_times_both_models_together_and_reports_the_ratios(model, monkeypatch):
    calls = []

    def fake_time_models(models, image_size, threads, *runtime_settings):
        calls.append((list(models), image_size, threads))
        return [10.0, 4.0]

    monkeypatch.setattr("segprune.search.kinds.time_models", fake_time_models)
    pruned = keras.models.clone_model(model)
    measured = measure(model, pruned, SearchSettings(image_size=48, threads=3))
    assert calls == [([model, pruned], (48, 48), 3)]
    assert measured == {"dense_ms": 10.0, "pruned_ms": 4.0, "speedup": 2.5, "latency_fraction": 0.4}


@pytest.mark.parametrize("search", [greedy_search, random_search])
def test_a_target_the_narrowest_model_cannot_meet_is_refused_and_leaves_no_folder(data16, model, model_graph, tmp_path, search):
    folder = tmp_path / "out.search"
    settings = SearchSettings(**{**SETTINGS.__dict__, "target": "flops=0.001"})
    with pytest.raises(ValueError, match="cannot be met: the narrowest configuration"):
        search(model, data16, folder, settings, CANDIDATES, graph=model_graph)
    assert not folder.exists()
    folder.mkdir()  # a folder that was there is kept, with what it held and without the refused search's log
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="cannot be met"):
        search(model, data16, folder, settings, CANDIDATES, graph=model_graph)
    assert [path.name for path in folder.iterdir()] == ["notes.txt"]
