"""Evaluating a candidate of a Mask R-CNN search: the trunk narrowed for real, a few detector steps, val mask AP.

The segmentation evaluator (`evaluation.CandidateEvaluator`) masks one compiled parent and trains it with
`model.fit`. A detector trains through its own step (`train_mask_rcnn`: RPN targets, proposals, RoI sampling,
both heads) and is scored by detecting, so here every candidate is built: the parent's trunk rebuilt at the
candidate's widths (channels kept by importance, as `space.shrink` keeps them), the parent's box and mask
heads copied, `finetune_steps` batches of the Mask R-CNN training step, and the mask AP on
`CandidateSettings.split`. Each candidate seeds itself from the search seed and its name (`candidate_seed`),
so its score does not depend on the order it ran in or on a resume; the last few trained candidates are kept,
so the chosen one is not trained again.

Example:
    >>> with InstanceCandidatePool(data, CandidateSettings(finetune_steps=10)) as pool:
    ...     scores = [outcome["score"] for _, outcome in pool.map(candidates)]
"""

from __future__ import annotations

import time
from pathlib import Path

from segprune.backend.determinism import deterministic_kernels, seed_random
from segprune.data.instances import InstanceDataset
from segprune.instance_metrics import evaluate_instances
from segprune.models.mask_rcnn import MaskRCNN, train_mask_rcnn
from segprune.search.evaluation import Candidate, CandidateSettings, candidate_seed
from segprune.search.kinds import load_parent, shrink_parent
from segprune.search.settings import SearchSettings
from segprune.search.space import Configuration

KEPT_CANDIDATES = 4  # trained candidates kept in memory, so the chosen one need not be trained again


class InstanceCandidateEvaluator:
    """One parent detector; builds, trains briefly and scores any narrowing of its trunk.

    Example:
        >>> evaluator = InstanceCandidateEvaluator(parent, data, settings)
        >>> evaluator.score(parent_config, config, seed=1)  # validation mask AP
        >>> smaller = evaluator.build(config, seed=1)  # that candidate, as trained when scored
    """

    def __init__(self, parent: MaskRCNN, data: InstanceDataset, settings: CandidateSettings) -> None:
        if not isinstance(data, InstanceDataset):
            raise ValueError(
                f"A Mask R-CNN's candidates train and score on instances: pass load_instance_data(DATA, val_fraction=0.15), got {type(data).__name__}."
            )
        if not data.ids(settings.split):
            raise ValueError(f"Candidates are scored by mask AP on the {settings.split!r} split, which {data.name!r} lacks: load it with val_fraction=0.15.")
        self.parent, self.data, self.settings = parent, data, settings
        self.trained: dict[tuple, MaskRCNN] = {}

    def score(self, current: Configuration, wanted: Configuration, seed: int) -> float:
        """Validation mask AP of the parent narrowed from `current` to `wanted` widths after the short training."""
        candidate = self._trained(current, wanted, seed)
        return float(evaluate_instances(candidate, self.data, self.settings.split)["ap"])

    def build(self, current: Configuration, wanted: Configuration, seed: int) -> MaskRCNN:
        """The candidate as trained when it was scored (trained again, seeded, if it was scored before a resume)."""
        return self._trained(current, wanted, seed)

    def _trained(self, current: Configuration, wanted: Configuration, seed: int) -> MaskRCNN:
        key = (tuple(sorted(wanted.items())), seed)
        if key in self.trained:
            return self.trained[key]
        seed_random(seed)
        candidate = shrink_parent(self.parent, current, wanted, self.settings.importance)
        if self.settings.finetune_steps > 0:
            train_mask_rcnn(
                candidate, self.data, steps=self.settings.finetune_steps, batch_size=self.settings.batches.batch_size,
                learning_rate=self.settings.learning_rate, seed=seed,
            )
        if len(self.trained) >= KEPT_CANDIDATES:
            self.trained.pop(next(iter(self.trained)))  # the oldest goes; building it would train it again
        self.trained[key] = candidate
        return candidate


_EVALUATORS: dict[str, tuple[float, InstanceCandidateEvaluator]] = {}


def instance_evaluator_for(path: str, data: InstanceDataset, settings: CandidateSettings) -> InstanceCandidateEvaluator:
    """The evaluator of the detector saved at `path` (loaded once per parent; a greedy step replaces it)."""
    stamp = Path(path).stat().st_mtime
    cached = _EVALUATORS.get(path)
    if cached is None or cached[0] != stamp or cached[1].data is not data or cached[1].settings != settings:
        _EVALUATORS.clear()
        parent = load_parent(path)
        if not isinstance(parent, MaskRCNN):
            raise ValueError(f"{path!r} holds a {type(parent).__name__}, not a Mask R-CNN; instance candidates narrow a detector's trunk.")
        _EVALUATORS[path] = (stamp, InstanceCandidateEvaluator(parent, data, settings))
    return _EVALUATORS[path][1]


def evaluate_instance_candidate(candidate: Candidate, data: InstanceDataset, settings: CandidateSettings) -> dict:
    """Builds, trains and scores one candidate; returns `{"score", "seconds"}` as `evaluation.evaluate_candidate` does."""
    started = time.perf_counter()
    evaluator = instance_evaluator_for(candidate.parent, data, settings)
    score = evaluator.score(candidate.parent_config, candidate.config, candidate_seed(settings, candidate.name))
    return {"score": score, "seconds": time.perf_counter() - started}


def build_instance_candidate(candidate: Candidate, data: InstanceDataset, settings: CandidateSettings) -> MaskRCNN:
    """The candidate detector as it was scored (its trunk narrowed, its heads copied, briefly trained)."""
    evaluator = instance_evaluator_for(candidate.parent, data, settings)
    return evaluator.build(candidate.parent_config, candidate.config, candidate_seed(settings, candidate.name))


class InstanceCandidatePool:
    """Evaluates a detector's candidates in this process, with deterministic kernels on while it is open.

    Worker processes and Ray are not offered: their pools load segmentation data and models by source.
    """

    def __init__(self, data: InstanceDataset, settings: CandidateSettings, search_settings: SearchSettings | None = None) -> None:
        if search_settings is not None and (search_settings.workers != 1 or search_settings.executor != "local"):
            raise ValueError(
                "A Mask R-CNN search evaluates its candidates in this process: leave out workers / executor "
                f"(--workers, --executor); got workers={search_settings.workers}, executor={search_settings.executor!r}."
            )
        self.data, self.settings = data, settings
        self.restore_determinism = False

    def map(self, candidates: list[Candidate]):
        """Yields (candidate, result) in the order given."""
        for candidate in candidates:
            yield candidate, evaluate_instance_candidate(candidate, self.data, self.settings)

    def __enter__(self) -> InstanceCandidatePool:
        self.restore_determinism = not deterministic_kernels()
        return self

    def __exit__(self, *exc) -> None:
        if self.restore_determinism:
            deterministic_kernels(False)
