"""A search's cost up front and as it goes, and its time limit."""

import json

import pytest

from segprune import flops
from segprune.data import BatchConfig
from segprune.search import progress
from segprune.search.evaluation import CandidateSettings
from segprune.search.greedy import greedy_search
from segprune.search.kinds import network_timer
from segprune.search.progress import SearchClock, SearchTimeLimit
from segprune.search.random_search import random_search
from segprune.search.settings import SearchSettings

SETTINGS = SearchSettings(target="flops=0.5", image_size=64, final_epochs=0, time_result=False)
LIMITED = SearchSettings(**{**SETTINGS.__dict__, "max_minutes": 100})  # the limit itself comes from _limit_after
CANDIDATES = CandidateSettings(finetune_steps=0, batches=BatchConfig(batch_size=2, image_size=32))  # scored on inherited weights: the clock, not the fine-tune, is tested


def _records(folder, kind):
    return [r for r in map(json.loads, (folder / "search.jsonl").read_text().splitlines()) if r["type"] == kind]


class _Clock:
    """A clock that advances one minute per reading."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 60.0
        return self.now


def _limit_after(monkeypatch, candidates):
    """Time runs out once this run has finished `candidates` candidates."""
    monkeypatch.setattr(SearchClock, "out_of_time", lambda self: self.done - self.resumed >= candidates)


def test_the_clock_estimates_the_time_left_after_a_few_candidates(monkeypatch):
    monkeypatch.setattr(progress, "_now", _Clock())
    clock = SearchClock(expected=10, evaluated=2, max_minutes=4)  # started at minute 1
    assert clock.finished()["remaining"] is None  # minute 2
    clock.finished()  # minute 3
    last = clock.finished()  # minute 4: 3 candidates in 3 minutes, 5 left
    assert last["done"] == 5 and last["expected"] == 10
    assert last["elapsed"] == 180.0 and last["remaining"] == pytest.approx(300.0)
    assert clock.out_of_time()  # minute 5: the 4 minutes are spent
    with pytest.raises(ValueError, match="max_minutes"):
        SearchClock(expected=1, max_minutes=0)


def test_greedy_announces_its_candidates_reports_progress_and_resumes_after_its_time_limit(data4, model, model_graph, tmp_path, monkeypatch):
    plans, seen = [], []
    reference = greedy_search(
        model, data4, tmp_path / "reference", SETTINGS, CANDIDATES, iterations=3, on_start=plans.append, on_candidate=lambda r, b: seen.append(r),
        graph=model_graph,
    )
    assert len(plans) == 1 and plans[0]["evaluated"] == 0
    evaluated = len(_records(tmp_path / "reference", "candidate"))
    assert plans[0]["expected"] == evaluated, "the first estimate counts the candidates the search evaluates"
    assert [(r["done"], r["expected"]) for r in seen] == [(done, evaluated) for done in range(1, evaluated + 1)], "counters step by one to it"
    assert all(r["remaining"] is None for r in seen[:2]) and seen[-1]["remaining"] is not None

    steps = len(_records(tmp_path / "reference", "step"))
    first_step = sum(r["iteration"] == 0 for r in _records(tmp_path / "reference", "candidate"))
    _limit_after(monkeypatch, first_step + 1)  # in the middle of step 2
    result = greedy_search(model, data4, tmp_path / "limited", LIMITED, CANDIDATES, iterations=3, graph=model_graph)
    monkeypatch.undo()
    assert steps > 1 and len(_records(tmp_path / "limited", "step")) < steps
    assert result.resource_fraction <= 0.5
    assert flops(result.model, (64, 64)).macs / flops(model, (64, 64)).macs == pytest.approx(result.resource_fraction)
    assert "time limit" in result.notes[-1] and _records(tmp_path / "limited", "stopped")
    resumed = greedy_search(model, data4, tmp_path / "limited", SETTINGS, CANDIDATES, iterations=3, resume=True, graph=model_graph)
    assert resumed.config == reference.config
    assert len(_records(tmp_path / "limited", "candidate")) == len(_records(tmp_path / "reference", "candidate"))


def test_a_time_limit_before_the_first_step_is_a_clear_error(data4, model, model_graph, tmp_path, monkeypatch):
    _limit_after(monkeypatch, 1)
    with pytest.raises(SearchTimeLimit, match="before the first greedy step finished.*--resume"):
        greedy_search(model, data4, tmp_path, LIMITED, CANDIDATES, iterations=2, graph=model_graph)
    assert len(_records(tmp_path, "candidate")) >= 1


@pytest.mark.exhaustive  # greedy's time-limit test covers the limit; make test-all runs random search's too
def test_random_search_stops_at_the_time_limit_with_its_best_so_far(data4, model, model_graph, tmp_path, monkeypatch):
    _limit_after(monkeypatch, 2)
    result = random_search(model, data4, tmp_path, LIMITED, CANDIDATES, num_candidates=5, graph=model_graph)
    assert result.candidates == 2 and "time limit" in result.notes[-1] and result.resource_fraction <= 0.5


def test_the_last_step_is_narrowed_to_the_budget_and_no_further(model, model_graph, tmp_path):
    from segprune.search.budget import Budget
    from segprune.search.greedy import uniformly_narrowed

    budget = Budget(model_graph, SETTINGS, tmp_path, network_timer(model, SETTINGS))
    narrowed = uniformly_narrowed(budget, budget.space.dense())
    assert budget.share(narrowed) <= 0.5
    wider = {key: next((w for w in budget.space.widths(key) if w > width), width) for key, width in narrowed.items()}
    assert budget.share(wider) > 0.5, "one notch wider everywhere would miss the budget: the cut is as small as it can be"
    assert any(budget.share({**narrowed, key: wider[key]}) > 0.5 for key in narrowed), "it stopped at the first notch within the budget"
    just_over = next({**narrowed, key: wider[key]} for key in narrowed if budget.share({**narrowed, key: wider[key]}) > 0.5)
    again = uniformly_narrowed(budget, just_over)  # a finished step just over the budget loses one notch, not a common factor
    assert budget.share(again) <= 0.5 and sum(again[key] != just_over[key] for key in again) == 1


def test_greedy_plans_its_steps_from_widths_and_costs_and_counts_what_is_left_from_the_nearest_step(model, model_graph, tmp_path):
    from segprune.search.budget import Budget
    from segprune.search.greedy import candidates_after, planned_steps, proposals, step_ratio

    budget = Budget(model_graph, SETTINGS, tmp_path, network_timer(model, SETTINGS))
    ratio = step_ratio(budget, 3)
    path = planned_steps(budget, budget.space.dense(), ratio)
    assert path[0] == (1.0, len(proposals(budget, budget.space.dense(), budget.dense_cost * ratio)))
    assert [share for share, _ in path] == sorted((share for share, _ in path), reverse=True) and path[-1][0] > 0.5
    plan = [(1.0, 7), (0.8, 5), (0.6, 3)]
    assert candidates_after(plan, 1.0) == 8 and candidates_after(plan, 0.78) == 3 and candidates_after(plan, 0.5) == 0
