"""Greedy search in the manner of NetAdapt (Yang et al., ECCV 2018).

From the full model, each iteration proposes, for every group, the widest narrowing of that group alone
that cuts the resource by the iteration's step; every proposal is built from the current model, briefly
fine-tuned and scored on held-out data; the proposal that loses the least accuracy per unit of resource
saved becomes the current model. Iterations repeat until the budget is met; a long fine-tune follows.

Each iteration's proposals are saved under `<folder>/iterations/`, and every evaluation and choice is logged,
so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras

from segprune.data.dataset import SegmentationDataset
from segprune.metrics import evaluate
from segprune.models.loading import copy_model, load_model
from segprune.search.budget import Budget, measure
from segprune.search.evaluation import Candidate, CandidatePool, CandidateSettings
from segprune.search.folder import open_search
from segprune.search.log import SearchLog
from segprune.search.settings import SearchResult, SearchSettings
from segprune.search.space import Configuration
from segprune.training import EpochReporter, TrainConfig, train

Progress = Callable[[dict, dict], None]  # (candidate record, best record so far)
MAX_RECHECKS = 3  # latency targets: times the search may continue after its model timed over the budget


def proposals(budget: Budget, config: Configuration, limit: float) -> dict[str, Configuration]:
    """For every group, `config` with that group narrowed as little as possible to cost <= `limit`.

    When no single group can reach `limit` (late in a search, or in small models), every group that can
    still shrink proposes its narrowest width instead, and the step is smaller.
    """
    found, narrowest = {}, {}
    for key in budget.space.groups:
        narrower = [w for w in budget.space.widths(key) if w < config[key]]
        if narrower:
            narrowest[key] = {**config, key: narrower[0]}
        for width in reversed(narrower):  # widest first: the least change that reaches the limit
            proposal = {**config, key: width}
            if budget.cost(proposal) <= limit:
                found[key] = proposal
                break
    return found or narrowest


def greedy_search(
    model: keras.Model,
    data: SegmentationDataset,
    folder: str | Path,
    settings: SearchSettings | None = None,
    candidate_settings: CandidateSettings | None = None,
    iterations: int = 10,
    resume: bool = False,
    data_source: str | None = None,
    on_candidate: Progress | None = None,
    on_epoch: EpochReporter | None = None,
) -> SearchResult:
    """Prunes `model` greedily to `settings.target`, keeping everything needed to resume in `folder`.

    Args:
        model: The trained dense model (left untouched).
        data: Its dataset (candidates are scored on `candidate_settings.split`).
        folder: Where the log (`search.jsonl`), the latency table and the iterations' models go.
        settings: Target, measurement and final fine-tune settings.
        candidate_settings: Short fine-tune and scoring of each proposal.
        iterations: The resource falls by (1 - target fraction) / iterations of the dense model's per step.
        resume: Continue the search logged in `folder`.
        data_source: How worker processes load `data` (with `settings.workers > 1`).
        on_candidate: Progress callback after each evaluated proposal.
        on_epoch: Progress callback of the final fine-tune.

    Example:
        >>> result = greedy_search(model, data, "runs/greedy", SearchSettings(target="flops=0.25"))
        >>> result.resource_fraction <= 0.25
        True
    """
    settings = settings or SearchSettings()
    candidate_settings = candidate_settings or CandidateSettings()
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}.")
    started = time.perf_counter()
    folder = Path(folder)
    method = {"method": "greedy", "iterations": iterations}
    log, budget, dense_path = open_search(model, folder, method, settings, candidate_settings, resume)
    step = (budget.dense_cost - budget.limit) / iterations

    baseline = log.of_type("baseline")
    score = baseline[0]["score"] if baseline else evaluate(model, data, candidate_settings.split).dice
    if not baseline:
        log.write({"type": "baseline", "score": score, "resource": budget.dense_cost})
    config, parent = budget.space.dense(), dense_path
    done_steps = log.of_type("step")
    if done_steps:
        last = done_steps[-1]
        config, parent, score = last["config"], Path(last["model"]), last["score"]
    evaluated = {(r["iteration"], r["key"]): r for r in log.of_type("candidate")}
    iteration = len(done_steps)
    chosen_models = {Path(step["model"]).resolve() for step in done_steps}
    rechecks = log.of_type("recheck")
    if rechecks:
        budget.limit = rechecks[-1]["limit"]
    notes = [_recheck_note(r) for r in rechecks]
    with CandidatePool(data, candidate_settings, settings.workers, data_source) as pool:
        for _ in range(MAX_RECHECKS + 1):
            while budget.cost(config) > budget.limit:
                current = budget.cost(config)
                limit = max(budget.limit, current - step)
                found = proposals(budget, config, limit)
                best = {"score": float("-inf"), "key": None}  # the best proposal of this step
                if not found and notes:  # a re-check asked for more than the narrowest configuration gives
                    notes.append("every group is at its narrowest width; the timed latency above is the best this search can do")
                    break
                if not found:
                    raise ValueError(f"No group can be narrowed further, but {budget.share(config):.3f} of the {budget.resource_name} remain.")
                records = _evaluate(pool, found, iteration, config, parent, folder, budget, evaluated, log, best, on_candidate)
                chosen = min(records, key=lambda r: (score - r["score"]) / max(current - r["resource"], 1e-12))
                config, parent, score = chosen["config"], Path(chosen["model"]), chosen["score"]
                log.write({"type": "step", "iteration": iteration, "key": chosen["key"], "config": config, "model": str(parent),
                           "score": score, "resource": chosen["resource"], "share": chosen["resource"] / budget.dense_cost})
                chosen_models.add(Path(parent).resolve())
                _remove_unchosen(folder, chosen_models)
                iteration += 1
            if budget.resource_name != "latency" or Path(parent) == dense_path or budget.cost(config) > budget.limit:
                break
            # The table is an estimate: time the model, and if it misses the budget, tighten the table's
            # limit by the miss and go on (NetAdapt's estimates are checked the same way).
            timed = measure(model, load_model(parent), settings)["latency_fraction"]
            if timed <= budget.fraction:
                break
            recheck = {"type": "recheck", "timed": timed, "estimated": budget.share(config), "limit": budget.limit * budget.fraction / timed}
            log.write(recheck)
            notes.append(_recheck_note(recheck))
            budget.limit = recheck["limit"]

    result_model = load_model(parent) if Path(parent) != dense_path else copy_model(model)
    result = SearchResult(result_model, config, budget.share(config), latency_source=budget.latency_source, notes=notes)
    result.candidates = len(log.of_type("candidate"))
    if settings.final_epochs > 0:
        train(result_model, data, settings.final_epochs, TrainConfig(patience=None), on_epoch=on_epoch)
    if settings.time_result or budget.resource_name == "latency":
        result.measured = measure(model, result_model, settings)
    result.seconds = time.perf_counter() - started
    log.write({"type": "done", "config": config, "share": result.resource_fraction, "measured": result.measured})
    return result


def _recheck_note(recheck: dict) -> str:
    return (
        f"timed at {recheck['timed']:.3f} of the dense latency where the table estimated {recheck['estimated']:.3f}; "
        f"searching on to a table limit of {recheck['limit']:.2f} ms"
    )


def _evaluate(pool, found, iteration, config, parent, folder, budget, evaluated, log, best, on_candidate) -> list[dict]:
    records, pending = [], []
    for key, proposal in found.items():
        if (iteration, key) in evaluated:
            records.append(evaluated[(iteration, key)])
            continue
        save_to = folder / "iterations" / f"{iteration:03d}" / f"{key.replace('/', '_').replace(',', '+')}.keras"
        pending.append(Candidate(f"{iteration}:{key}", str(parent), config, proposal, str(save_to)))
    for candidate in pending:
        Path(candidate.save_to).parent.mkdir(parents=True, exist_ok=True)
    for candidate, outcome in pool.map(pending):
        key = candidate.name.split(":", 1)[1]
        record = {"type": "candidate", "iteration": iteration, "key": key, "config": candidate.config,
                  "resource": budget.cost(candidate.config), "share": budget.share(candidate.config),
                  "score": outcome["score"], "seconds": outcome["seconds"], "model": candidate.save_to}
        log.write(record)
        records.append(record)
        if record["score"] > best["score"] or best["key"] is None:
            best.update(record)
        if on_candidate is not None:
            on_candidate(record, best)
    return records


def _remove_unchosen(folder: Path, chosen: set[Path]) -> None:
    """Drops the proposals that were not chosen (an iteration's proposals can take hundreds of MB). The chosen
    ones stay: they are the family of ever smaller models the search passed through (see `family`)."""
    iterations = folder / "iterations"
    for directory in iterations.iterdir() if iterations.exists() else ():
        for path in directory.glob("*.keras"):
            if path.resolve() not in chosen:
                path.unlink()
        if not any(directory.iterdir()):
            shutil.rmtree(directory)


def family(folder: str | Path) -> list[dict]:
    """The steps of a greedy search logged in `folder`: each with its `share` of the resource and `model` path.

    NetAdapt's by-product: one search to a small budget yields a model at every larger budget on the way.
    """
    path = Path(folder) / "search.jsonl"
    return [record for record in SearchLog(path, {}, resume=True, check=False).records if record.get("type") == "step"]
