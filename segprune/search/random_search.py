"""Random search over channel configurations ("Revisiting Random Channel Pruning", Li et al., CVPR 2022).

Configurations are drawn uniformly over every group's allowed widths (below a common cap that makes tight
budgets reachable) and kept only if they spend the budget (between `1 - slack` of it and all of it); each inherits the dense model's weights through an
importance criterion, is briefly fine-tuned and scored. The search stops early once a candidate reaches the
accuracy floor (or when `SearchSettings.max_minutes` is spent); the best configuration is then rebuilt
and fine-tuned at length. The sequence of
configurations depends only on the seed, so a resumed search draws the same ones and skips those its log
already holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from segprune.data.dataset import SegmentationDataset
from segprune.graph.groups import ChannelGraph
from segprune.search.budget import Budget, measure
from segprune.search.evaluation import Candidate, CandidateSettings
from segprune.search.folder import open_search
from segprune.search.greedy import Progress
from segprune.search.pools import build_chosen, open_pool
from segprune.search.progress import SearchClock, SearchTimeLimit, StartReporter
from segprune.search.settings import SearchResult, SearchSettings
from segprune.search.space import Configuration
from segprune.training import EpochReporter, TrainConfig, train

MAX_DRAWS = 400  # per cap and band
CAP_DRAWS = 24  # draws per bisection step when setting the width cap
CAP_STEPS = 10


def sample_configurations(budget: Budget, seed: int, slack: float = 0.15) -> Iterator[Configuration]:
    """Endless configurations costing between (1 - slack) and 1 times the budget, drawn with rejection.

    Each group's width is uniform over its allowed widths up to a cap, the same share `cap` of every
    group's size. Uncapped uniform draws almost never land near a tight budget (on the default U-Net,
    none of 300 draws cost under 0.19 of the MACs), so the cap is set first, by bisection, to where about
    half the draws fit the budget; the draws are then rejected until one falls in the band.
    """
    rng = np.random.default_rng(seed)
    keys = list(budget.space.groups)
    widths = {key: budget.space.widths(key) for key in keys}
    low = (1.0 - slack) * budget.limit

    def draw(cap: float) -> Configuration:
        config = {}
        for key in keys:
            allowed = [w for w in widths[key] if w <= cap * widths[key][-1]] or widths[key][:1]
            config[key] = int(allowed[rng.integers(len(allowed))])
        return config

    def fits_half(cap: float) -> bool:
        costs = [budget.cost(draw(cap)) for _ in range(CAP_DRAWS)]
        return float(np.median(costs)) <= budget.limit

    cap = 1.0
    if not fits_half(cap):
        lower, upper = 0.0, 1.0
        for _ in range(CAP_STEPS):
            middle = (lower + upper) / 2
            lower, upper = (middle, upper) if fits_half(middle) else (lower, middle)
        cap = lower if lower > 0 else upper
    caps = np.linspace(cap, 1.0, 5)  # small spaces: the band may only be reachable with wider draws
    while True:
        found = None
        for lowest in (low, 0.0):  # if the band stays empty, anything under the budget
            for current_cap in caps:
                for _ in range(MAX_DRAWS):
                    config = draw(float(current_cap))
                    if lowest <= budget.cost(config) <= budget.limit:
                        found = config
                        break
                if found:
                    break
            if found:
                break
        if found is None:
            raise ValueError(
                f"No configuration under the budget was drawn in {2 * len(caps) * MAX_DRAWS} tries; the target is too "
                "tight for random sampling. Raise the target or use --method greedy."
            )
        yield found


def random_search(
    model: keras.Model,
    data: SegmentationDataset,
    folder: str | Path,
    settings: SearchSettings | None = None,
    candidate_settings: CandidateSettings | None = None,
    num_candidates: int = 20,
    accuracy_floor: float | None = None,
    resume: bool = False,
    data_source: str | None = None,
    on_candidate: Progress | None = None,
    on_epoch: EpochReporter | None = None,
    on_start: StartReporter | None = None,
    *,
    graph: ChannelGraph,
) -> SearchResult:
    """Samples `num_candidates` configurations that meet `settings.target`, keeps the best, fine-tunes it.

    Args:
        model: The trained dense model (left untouched).
        data: Its dataset.
        folder: Where the log (`search.jsonl`) and latency table go.
        settings, candidate_settings: As in `greedy_search`.
        num_candidates: Configurations to evaluate at most.
        accuracy_floor: Stop as soon as a candidate's validation Dice reaches this.
        resume, data_source, on_candidate, on_epoch, on_start, graph: As in `greedy_search`.

    Raises:
        SearchTimeLimit: `settings.max_minutes` ran out before any candidate finished.

    Example:
        >>> settings = SearchSettings(target="flops=0.25")
        >>> graph = build_channel_graph(model, input_shape=settings.image_size)
        >>> result = random_search(model, data, "runs/random", settings, num_candidates=20, graph=graph)
    """
    settings = settings or SearchSettings()
    candidate_settings = candidate_settings or CandidateSettings()
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}.")
    started = time.perf_counter()
    method = {"method": "random-search", "candidates": num_candidates, "accuracy_floor": accuracy_floor}
    log, budget, dense_path = open_search(model, graph, folder, method, settings, candidate_settings, resume)
    dense_config = budget.space.dense()
    evaluated = {r["index"]: r for r in log.of_type("candidate")}
    best: dict = {"score": float("-inf"), "index": None}
    for record in sorted(evaluated.values(), key=lambda r: r["index"]):
        if record["score"] > best["score"]:
            best = dict(record)

    def reached_floor() -> bool:
        return accuracy_floor is not None and best["score"] >= accuracy_floor

    draws = sample_configurations(budget, candidate_settings.seed)
    configs = [next(draws) for _ in range(num_candidates)]
    clock = SearchClock(num_candidates, len(evaluated), settings.max_minutes)
    if on_start is not None:
        on_start({"method": "random-search", "expected": num_candidates, "evaluated": len(evaluated),
                  "description": f"{num_candidates} candidates"})
    per_batch = settings.workers if settings.executor == "local" else num_candidates
    stopped = False
    with open_pool(data, candidate_settings, settings, data_source) as pool:
        index = 0
        while index < num_candidates and not reached_floor() and not stopped:
            batch = []
            while index < num_candidates and len(batch) < per_batch:
                if index not in evaluated:
                    batch.append(Candidate(f"candidate{index}", str(dense_path), dense_config, configs[index]))
                index += 1
            results = pool.map(batch)
            for candidate, outcome in results:
                record = {"type": "candidate", "index": int(candidate.name[len("candidate"):]), "config": candidate.config,
                          "resource": budget.cost(candidate.config), "share": budget.share(candidate.config),
                          "score": outcome["score"], "seconds": outcome["seconds"]}
                log.write(record)
                evaluated[record["index"]] = record
                if record["score"] > best["score"]:
                    best = dict(record)
                progress = clock.finished()
                if on_candidate is not None:
                    on_candidate({**record, **progress}, best)
                if clock.out_of_time() or reached_floor():
                    stopped = clock.out_of_time()
                    results.close()  # the pool cancels the candidates not started
                    break
    if not evaluated:
        raise SearchTimeLimit(
            f"The time limit of {settings.max_minutes:g} minutes ran out before the first candidate finished; "
            "continue with --resume and a larger --max-minutes (or none)."
        )
    # Candidates are decided in index order, so a resumed run picks the same best even if workers finished out of order.
    ordered = [evaluated[i] for i in sorted(evaluated)]
    if accuracy_floor is not None:
        reaching = [r for r in ordered if r["score"] >= accuracy_floor]
        ordered = ordered[: ordered.index(reaching[0]) + 1] if reaching else ordered
    chosen = max(ordered, key=lambda r: r["score"])
    config = {key: int(width) for key, width in chosen["config"].items()}
    pruned = build_chosen(Candidate(f"candidate{chosen['index']}", str(dense_path), dense_config, config), data, candidate_settings)
    if settings.final_epochs > 0:
        train(pruned, data, settings.final_epochs, TrainConfig(patience=None), on_epoch=on_epoch)
    result = SearchResult(pruned, config, budget.share(config), candidates=len(evaluated), latency_source=budget.latency_source)
    if reached_floor() or any(r["score"] >= (accuracy_floor or np.inf) for r in ordered):
        result.notes.append(f"stopped early: candidate {chosen['index']} reached the accuracy floor {accuracy_floor}")
    elif stopped:
        result.notes.append(
            f"stopped at the time limit of {settings.max_minutes:g} minutes after {len(evaluated)} of {num_candidates} candidates; "
            "--resume continues the search past the limit"
        )
    if settings.time_result or budget.resource_name == "latency":
        result.measured = measure(model, pruned, settings)
    result.seconds = time.perf_counter() - started
    log.write({"type": "done", "index": chosen["index"], "config": config, "share": result.resource_fraction, "measured": result.measured})
    return result
