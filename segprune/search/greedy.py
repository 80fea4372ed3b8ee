"""Greedy search in the manner of NetAdapt (Yang et al., ECCV 2018).

From the full model, each iteration proposes, for every group, the widest narrowing of that group alone
that cuts the resource by the iteration's step; the step decays as NetAdapt's does: every iteration cuts
the same share of what is left (the share that reaches the target in `iterations` steps). A group that
cannot make the step alone proposes nothing; when no group can (late steps, once the groups that carry the
most are narrow), the step shrinks to what three groups can each cut by at most half their width, rather
than every group proposing its narrowest width. Every proposal is built from the current model, briefly
fine-tuned and scored on held-out data; the proposal that loses the least accuracy per unit of resource
saved becomes the current model. Iterations repeat until the budget is met; a long fine-tune follows.

Each iteration's proposals are saved under `<folder>/iterations/`, and every evaluation and choice is logged,
so an interrupted search resumes where it stopped. With a time limit (`SearchSettings.max_minutes`) the search
stops after the candidate that spends it and returns the last finished step, narrowed to the budget one-shot;
`--resume` continues the search past the limit.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from segprune.data.dataset import SegmentationDataset
from segprune.graph.groups import ChannelGraph
from segprune.search.budget import Budget, measure
from segprune.search.evaluation import Candidate, CandidateSettings
from segprune.search.folder import open_search
from segprune.search.kinds import copy_parent, load_parent, parent_score, save_parent, shrink_parent
from segprune.search.log import SearchLog
from segprune.search.pools import build_chosen, open_pool
from segprune.search.progress import SearchClock, SearchTimeLimit, StartReporter
from segprune.search.settings import SearchResult, SearchSettings
from segprune.search.space import Configuration
from segprune.training import EpochReporter, TrainConfig, train

Progress = Callable[[dict, dict], None]  # (candidate record with "done", "expected", "elapsed", "remaining"; best so far)
MAX_RECHECKS = 3  # latency targets: times the search may continue after its model timed over the budget
STEP_KEEP = 0.5  # a group keeps at least this share of its width in one step
FALLBACK_PROPOSALS = 3  # a step no group can make alone shrinks until this many groups can make it


def proposals(budget: Budget, config: Configuration, limit: float) -> dict[str, Configuration]:
    """For every group, `config` with that group narrowed as little as possible to cost <= `limit`.

    No group loses more than `STEP_KEEP` of its width in one step (or one allowed width, where that is already
    more): a group that cannot reach `limit` so proposes nothing. When no group can (the step is larger than
    any one group can give gently), the step shrinks to the largest cut that `FALLBACK_PROPOSALS` groups can
    each make, and those groups propose it, rather than groups falling to their narrowest width.
    """
    floors = {}  # the narrowest width each group may reach in this step
    for key in budget.space.groups:
        narrower = [w for w in budget.space.widths(key) if w < config[key]]
        if narrower:
            floors[key] = ([w for w in narrower if w >= STEP_KEEP * config[key]] or narrower[-1:])[0]
    found = {key: _narrowed_to(budget, config, key, limit, floor) for key, floor in floors.items()}
    found = {key: proposal for key, proposal in found.items() if proposal is not None}
    if found or not floors:
        return found
    reachable = sorted(budget.cost({**config, key: floor}) for key, floor in floors.items())
    shrunken = reachable[min(FALLBACK_PROPOSALS, len(reachable)) - 1]
    found = {key: _narrowed_to(budget, config, key, shrunken, floor) for key, floor in floors.items()}
    return {key: proposal for key, proposal in found.items() if proposal is not None}


def _narrowed_to(budget: Budget, config: Configuration, key: str, limit: float, floor: int) -> Configuration | None:
    """`config` with group `key` at the widest width >= `floor` that costs <= `limit`, or None."""
    for width in reversed([w for w in budget.space.widths(key) if floor <= w < config[key]]):  # widest first
        proposal = {**config, key: width}
        if budget.cost(proposal) <= limit:
            return proposal
    return None


def step_ratio(budget: Budget, iterations: int) -> float:
    """The share of its resource each step keeps, so that `iterations` steps reach the target (NetAdapt's decay)."""
    return (budget.limit / budget.dense_cost) ** (1.0 / iterations)


@dataclass
class _CountedBudget:
    """A latency budget's stand-in for planning: the same channel space, priced in MACs at the same fraction.

    Planning prices many configurations the search never visits; on a latency table each would be timed.
    """

    space: object
    fraction: float

    def __post_init__(self) -> None:
        self.dense_cost = self.space.resource({}, "flops")
        self.limit = self.fraction * self.dense_cost

    def cost(self, config: Configuration) -> float:
        return self.space.resource(config, "flops")


def planned_steps(budget: Budget, config: Configuration, ratio: float) -> list[tuple[float, int]]:
    """The steps from `config` to the budget as the search would take them if every step chose the proposal
    that cuts the most: `(share of the resource at the step's start, proposals it evaluates)` per step.

    Proposals depend on widths and costs alone, not on scores, so this dry run counts the candidates a search
    evaluates before any is trained; only which proposal wins is a guess (the cut is what the choice divides by,
    so the largest one wins more often than any other).
    """
    path = []
    while budget.cost(config) > budget.limit:
        current = budget.cost(config)
        found = proposals(budget, config, max(budget.limit, current * ratio))
        if not found:
            break
        path.append((current / budget.dense_cost, len(found)))
        config = min(found.values(), key=lambda proposal: (budget.cost(proposal), sorted(proposal.items())))
    return path


def candidates_after(path: list[tuple[float, int]], share: float) -> int:
    """Candidates of the planned steps after the one that starts nearest to `share` (the step being made).

    Not scaled by how the finished steps turned out: replayed on a logged nuclei search, scaling swung the
    total between 52 and 77 where the plan alone stayed within 57-64 (45 evaluated).
    """
    if not path:
        return 0
    nearest = min(range(len(path)), key=lambda index: abs(math.log(path[index][0] / share)))
    return sum(count for _, count in path[nearest + 1:])


def uniformly_narrowed(budget: Budget, config: Configuration) -> Configuration:
    """`config` narrowed evenly, one notch of one group at a time, until it meets the budget.

    Each notch goes to the group that keeps the largest share of its width in `config` after it (ties: of
    its current width), so the groups shrink by about one common factor; the narrowing stops at the first configuration within the budget
    (one common factor applied at once overshot: with widths in steps of 8, a 16-wide group loses half at
    the first notch, and a Mask R-CNN stopped at 0.545 of its MACs was cut to 0.332 for a budget of 0.5).
    """
    narrowed = dict(config)
    while budget.cost(narrowed) > budget.limit:
        notches = []
        for key, width in narrowed.items():
            smaller = [w for w in budget.space.widths(key) if w < width]
            if smaller:
                notches.append((smaller[-1] / config[key], smaller[-1] / width, key, smaller[-1]))
        if not notches:
            return budget.narrowest()
        *_, key, width = max(notches)
        narrowed[key] = width
    return narrowed


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
    on_start: StartReporter | None = None,
    *,
    graph: ChannelGraph,
) -> SearchResult:
    """Prunes `model` greedily to `settings.target`, keeping everything needed to resume in `folder`.

    Args:
        model: The trained dense model (left untouched).
        data: Its dataset (candidates are scored on `candidate_settings.split`).
        folder: Where the log (`search.jsonl`), the latency table and the iterations' models go.
        settings: Target, measurement and final fine-tune settings.
        candidate_settings: Short fine-tune and scoring of each proposal.
        iterations: Steps from the dense model to the target; each keeps `target ** (1 / iterations)` of the resource.
        resume: Continue the search logged in `folder`.
        data_source: How worker processes load `data` (with `settings.workers > 1`).
        on_candidate: Progress callback after each evaluated proposal.
        on_epoch: Progress callback of the final fine-tune.
        on_start: Called once before the first candidate with the plan: the candidates expected, counted by a dry
            run of the steps on the widths and costs alone (`planned_steps`).
        graph: The channel graph of the network searched (a Mask R-CNN's trunk, else `model`) traced at
            `settings.image_size`: `segprune.prune` hands over the one it traced, and a direct caller builds it,
            `build_channel_graph(search.kinds.network(model), input_shape=settings.image_size)`.

    Raises:
        SearchTimeLimit: `settings.max_minutes` ran out before the first step finished.

    Example:
        >>> settings = SearchSettings(target="flops=0.25")
        >>> graph = build_channel_graph(model, input_shape=settings.image_size)
        >>> result = greedy_search(model, data, "runs/greedy", settings, graph=graph)
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
    log, budget, dense_path = open_search(model, graph, folder, method, settings, candidate_settings, resume)
    ratio = step_ratio(budget, iterations)

    baseline = log.of_type("baseline")
    score = baseline[0]["score"] if baseline else parent_score(model, data, candidate_settings.split)
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
    planning = budget if budget.resource_name != "latency" else _CountedBudget(budget.space, budget.fraction)
    path = planned_steps(planning, config, ratio)
    in_step = sum(step == iteration for step, _ in evaluated)  # a resumed step's candidates are in the plan's first step
    clock = SearchClock(len(evaluated) - in_step + sum(count for _, count in path), len(evaluated), settings.max_minutes)
    if on_start is not None:
        priced = " (planned on MACs)" if planning is not budget else ""
        on_start({"method": "greedy", "expected": clock.expected, "evaluated": len(evaluated),
                  "description": f"{len(path)} steps of up to {len(budget.space.groups)} groups{priced}"})
    stopped = False
    with open_pool(data, candidate_settings, settings, data_source) as pool:
        for _ in range(MAX_RECHECKS + 1):
            while budget.cost(config) > budget.limit:
                current = budget.cost(config)
                limit = max(budget.limit, current * ratio)
                found = proposals(budget, config, limit)
                best = {"score": float("-inf"), "key": None}  # the best proposal of this step
                if not found and notes:  # a re-check asked for more than the narrowest configuration gives
                    notes.append("every group is at its narrowest width; the timed latency above is the best this search can do")
                    break
                if not found:
                    raise ValueError(f"No group can be narrowed further, but {budget.share(config):.3f} of the {budget.resource_name} remain.")
                in_step = sum((iteration, key) in evaluated for key in found)
                last = limit == budget.limit and all(budget.cost(proposal) <= budget.limit for proposal in found.values())
                later = 0 if last else candidates_after(path, planning.cost(config) / planning.dense_cost)
                clock.expected = clock.done - in_step + len(found) + later
                records = _evaluate(pool, found, iteration, config, parent, folder, budget, evaluated, log, best, on_candidate, clock)
                if len(records) < len(found):  # the time limit ended the step
                    stopped = True
                    break
                chosen = min(records, key=lambda r: (score - r["score"]) / max(current - r["resource"], 1e-12))
                parent = _build_chosen(Candidate(f"{iteration}:{chosen['key']}", str(parent), config, chosen["config"]), folder, data, candidate_settings)
                config, score = chosen["config"], chosen["score"]
                log.write({"type": "step", "iteration": iteration, "key": chosen["key"], "config": config, "model": str(parent),
                           "score": score, "resource": chosen["resource"], "share": chosen["resource"] / budget.dense_cost})
                chosen_models.add(Path(parent).resolve())
                _remove_unchosen(folder, chosen_models)
                iteration += 1
                if clock.out_of_time() and budget.cost(config) > budget.limit:
                    stopped = True
                    break
            if stopped or budget.resource_name != "latency" or Path(parent) == dense_path or budget.cost(config) > budget.limit:
                break
            # The table is an estimate: time the model, and if it misses the budget, tighten the table's
            # limit by the miss and go on (NetAdapt's estimates are checked the same way).
            timed = measure(model, load_parent(parent), settings)["latency_fraction"]
            if timed <= budget.fraction:
                break
            recheck = {"type": "recheck", "timed": timed, "estimated": budget.share(config), "limit": budget.limit * budget.fraction / timed}
            log.write(recheck)
            notes.append(_recheck_note(recheck))
            budget.limit = recheck["limit"]

    if stopped:
        if Path(parent) == dense_path:
            raise SearchTimeLimit(
                f"The time limit of {settings.max_minutes:g} minutes ran out before the first greedy step finished "
                f"({clock.done} of {len(found)} candidates of step 1 are logged in {folder}). Continue with --resume "
                "(a larger --max-minutes, or none), or lower --iterations / --candidate-steps to make steps cheaper."
            )
        result_model, config, note = _finish_at_limit(budget, config, parent, iteration, candidate_settings, data, settings)
        log.write({"type": "stopped", "reason": "time limit", "steps": iteration, "config": config})
        notes.append(note)
    else:
        result_model = load_parent(parent) if Path(parent) != dense_path else copy_parent(model)
    result = SearchResult(result_model, config, budget.share(config), latency_source=budget.latency_source, notes=notes)
    result.candidates = len(log.of_type("candidate"))
    if settings.final_epochs > 0:
        train(result_model, data, settings.final_epochs, TrainConfig(patience=None), on_epoch=on_epoch)
    if settings.time_result or budget.resource_name == "latency":
        result.measured = measure(model, result_model, settings)
    result.seconds = time.perf_counter() - started
    log.write({"type": "done", "config": config, "share": result.resource_fraction, "measured": result.measured})
    return result


def _finish_at_limit(budget, config, parent, steps, candidate_settings, data, settings) -> tuple[keras.Model, Configuration, str]:
    """The last finished step's model, narrowed uniformly (one-shot, by importance) to the budget if it is not there yet."""
    step_share = budget.share(config)
    narrowed = uniformly_narrowed(budget, config)
    result_model = shrink_parent(load_parent(parent), config, narrowed, candidate_settings.importance, data)
    note = (
        f"stopped at the time limit of {settings.max_minutes:g} minutes after {steps} greedy step(s) ({step_share:.3f} of the "
        f"{budget.resource_name}); the rest of the way to {budget.share(narrowed):.3f} was cut evenly by "
        f"{candidate_settings.importance} importance. --resume continues the search past the limit."
    )
    return result_model, narrowed, note


def _recheck_note(recheck: dict) -> str:
    return (
        f"timed at {recheck['timed']:.3f} of the dense latency where the table estimated {recheck['estimated']:.3f}; "
        f"searching on to a table limit of {recheck['limit']:.2f} ms"
    )


def _evaluate(pool, found, iteration, config, parent, folder, budget, evaluated, log, best, on_candidate, clock) -> list[dict]:
    records, pending = [], []
    for key, proposal in found.items():
        if (iteration, key) in evaluated:
            records.append(evaluated[(iteration, key)])
            continue
        pending.append(Candidate(f"{iteration}:{key}", str(parent), config, proposal))
    if pending and clock.out_of_time():
        return records
    results = pool.map(pending)
    for candidate, outcome in results:
        key = candidate.name.split(":", 1)[1]
        record = {"type": "candidate", "iteration": iteration, "key": key, "config": candidate.config,
                  "resource": budget.cost(candidate.config), "share": budget.share(candidate.config),
                  "score": outcome["score"], "seconds": outcome["seconds"]}
        log.write(record)
        records.append(record)
        evaluated[(iteration, key)] = record
        if record["score"] > best["score"] or best["key"] is None:
            best.update(record)
        progress = clock.finished()
        if on_candidate is not None:
            on_candidate({**record, **progress}, best)
        if clock.out_of_time() and len(records) < len(found):
            results.close()  # the pool cancels the candidates not started
            break
    return records


def _build_chosen(candidate: Candidate, folder: Path, data: SegmentationDataset, settings: CandidateSettings) -> Path:
    """Builds the step's chosen candidate for real (evaluated again, seeded: the weights it was scored with) and saves it."""
    key = candidate.name.split(":", 1)[1]
    path = folder / "iterations" / f"{int(candidate.name.split(':')[0]):03d}" / f"{key.replace('/', '_').replace(',', '+')}.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_parent(build_chosen(candidate, data, settings), path)
    return path


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
