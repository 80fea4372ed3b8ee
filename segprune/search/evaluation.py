"""Evaluating a candidate configuration: narrow it from a parent model, fine-tune briefly, score on validation.

A candidate is not rebuilt: it is its parent with the removed channels *masked* (their BatchNorm gamma and
beta, or their producer's kernel and bias, held at zero by a constraint the optimizer applies after every
step), which computes exactly what the narrower model computes: the masked channels read as zeros
everywhere, and every other weight gets the gradients, and so the Adam updates, it would get in the
narrower model. So one compiled training step serves every candidate of a parent (a greedy step, or the
whole of a random search) instead of a model rebuilt and a step traced or run eagerly per candidate. Only
the chosen candidate is built for real (`CandidateEvaluator.build`), from its fine-tuned weights.

Candidates can be evaluated in this process or in worker processes (`CandidatePool(workers=N)`). Each
evaluation seeds itself from the search seed and the candidate's identity and starts from the parent's
weights and a fresh optimizer, so the score of a candidate does not depend on which process ran it, in
which order, or whether the search was resumed.
"""

from __future__ import annotations

import multiprocessing
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np

from segprune.backend.determinism import deterministic_kernels, seed_random
from segprune.data import load_data
from segprune.data.dataset import SegmentationDataset
from segprune.data.pipeline import BatchConfig, TrainingBatches
from segprune.graph.groups import Group, build_channel_graph
from segprune.graph.surgery import remove_channels
from segprune.inference import fixed_input_size, input_channels
from segprune.losses import CrossEntropyDiceLoss
from segprune.metrics import evaluate
from segprune.models.loading import copy_model, load_model
from segprune.models.outputs import output_kind
from segprune.search.space import Configuration, group_key
from segprune.sparse.model import find_weight
from segprune.structured.importance import channel_importance
from segprune.structured.regularised import channel_gates
from segprune.structured.selection import lowest_scored

KEPT_WEIGHTS_BYTES = 512 * 2**20  # fine-tuned candidates kept in memory, so the chosen one need not be trained again


@dataclass(frozen=True)
class CandidateSettings:
    """How each candidate is judged.

    The defaults are sized for ranking, not for accuracy: a short fine-tune on small patches ranks
    candidates as a longer one on larger patches does (benchmarks/search_nuclei.py measures the final
    Dice), at a fraction of the cost.

    Attributes:
        finetune_steps: Optimizer steps of short fine-tuning before scoring (0 scores the inherited weights).
        learning_rate: Constant Adam learning rate of the short fine-tune.
        importance: The criterion that picks which channels a narrower group keeps.
        batches: Batching of the short fine-tune (its seed is replaced per candidate).
        split: The held-out split the candidate is scored on (Dice).
        seed: The search seed.
    """

    finetune_steps: int = 20
    learning_rate: float = 1e-3
    importance: str = "l1"
    batches: BatchConfig = BatchConfig(batch_size=4, image_size=64)
    split: str = "val"
    seed: int = 0


@dataclass(frozen=True)
class Candidate:
    """One configuration to evaluate, derived from the model saved at `parent` (whose widths are `parent_config`)."""

    name: str
    parent: str
    parent_config: Configuration
    config: Configuration


def candidate_seed(settings: CandidateSettings, name: str) -> int:
    return (settings.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


class _Masked:
    """A variable constraint: the variable times a 0/1 mask along one axis (read at run time, not traced in)."""

    def __init__(self, mask: keras.Variable, axis: int, rank: int, inner=None) -> None:
        self.mask, self.inner = mask, inner
        self.shape = [-1 if i == axis % rank else 1 for i in range(rank)]

    def __call__(self, value):
        value = self.inner(value) if self.inner is not None else value
        return value * keras.ops.cast(keras.ops.reshape(self.mask, self.shape), value.dtype)


class CandidateEvaluator:
    """One parent model, compiled once; evaluates any narrowing of it as a masked copy (see the module doc).

    Example:
        >>> evaluator = CandidateEvaluator(parent, data, settings)
        >>> score = evaluator.score(parent_config, config, seed=1)
        >>> smaller = evaluator.build()  # the last scored candidate, fine-tuned, as a genuinely smaller model
    """

    def __init__(self, parent: keras.Model, data: SegmentationDataset, settings: CandidateSettings) -> None:
        self.data, self.settings = data, settings
        self.model = copy_model(parent)
        spatial = tuple(self.model.inputs[0].shape[1:-1])
        # Masks are priced by the gates' MACs, which need concrete shapes; any size serves a fully convolutional model.
        self.graph = build_channel_graph(self.model, input_shape=(64, 64) if None in spatial else None)
        self.scores = channel_importance(self.graph, settings.importance, data)
        self.groups: dict[str, Group] = {}
        for group in self.graph.prunable_groups():
            key = group_key(group)
            self.groups[key if key not in self.groups else f"{key}#{group.index}"] = group
        gates, sites, group_of_gate, _ = channel_gates(self.graph)
        self.masks = {group_of_gate[g.name].index: keras.Variable(np.ones(g.shape, "float32"), trainable=False) for g in gates}
        self.masked = []  # (variable, constraint): applied once before training, then by the optimizer
        by_gate = {g.name: group_of_gate[g.name].index for g in gates}
        for site in sites:
            variable = find_weight(self.model, site.layer, site.weight)
            constraint = _Masked(self.masks[by_gate[site.gate]], site.axis, len(variable.shape), variable.constraint)
            variable.constraint = constraint
            self.masked.append((variable, constraint))
        self.initial = [variable.numpy() for variable in self.model.variables]
        self.removed: list[int] = []
        self.scored: dict[tuple, tuple[list, list[int]]] = {}  # (wanted widths, seed) -> fine-tuned weights, removed
        if settings.finetune_steps > 0:
            self.model.compile(
                optimizer=keras.optimizers.Adam(settings.learning_rate), loss=CrossEntropyDiceLoss(output_kind(self.model), data.ignore_index)
            )

    def can_mask(self, current: Configuration, wanted: Configuration) -> bool:
        return all(self.groups[key].index in self.masks for key, width in wanted.items() if width < current.get(key, width))

    def score(self, current: Configuration, wanted: Configuration, seed: int) -> float:
        """Validation Dice of the parent narrowed from `current` to `wanted` widths after the short fine-tune."""
        for variable, value in zip(self.model.variables, self.initial):
            variable.assign(value)
        self.removed = []
        for key, group in self.groups.items():
            if group.index not in self.masks:
                continue
            drop = lowest_scored(group, self.scores, wanted[key]) if wanted.get(key, group.size) < current.get(key, group.size) else []
            mask = np.ones(group.size, "float32")
            mask[np.isin(group.classes, drop)] = 0.0
            self.masks[group.index].assign(mask)
            self.removed += [int(c) for c in drop]
        for variable, constraint in self.masked:
            variable.assign(constraint(variable))
        seed_random(seed)
        steps = self.settings.finetune_steps
        if steps > 0:
            optimizer = self.model.optimizer
            for variable in optimizer.variables:  # a fresh Adam for every candidate: step count and moments at zero...
                variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
            optimizer.learning_rate = self.settings.learning_rate  # ...but not its learning rate, also one of its variables
            # One epoch of exactly `steps` batches (Keras stops a PyDataset shorter than steps_per_epoch early).
            config = replace(self.settings.batches, seed=seed, samples_per_epoch=steps * self.settings.batches.batch_size)
            batches = TrainingBatches(self.data, "train", input_channels(self.model), config, patch=fixed_input_size(self.model))
            self.model.fit(batches, epochs=1, verbose=0)
        weights = [variable.numpy() for variable in self.model.variables]
        if len(self.scored) >= max(1, KEPT_WEIGHTS_BYTES // sum(w.nbytes for w in weights)):
            self.scored.pop(next(iter(self.scored)))  # the oldest goes; building it would evaluate it again
        self.scored[(tuple(sorted(wanted.items())), seed)] = (weights, list(self.removed))
        return float(evaluate(self.model, self.data, self.settings.split).dice)

    def restore(self, wanted: Configuration, seed: int) -> bool:
        """Puts back the weights a candidate scored in this process had (no second fine-tune); False if it was not."""
        found = self.scored.get((tuple(sorted(wanted.items())), seed))
        if found is None:
            return False
        for variable, value in zip(self.model.variables, found[0]):
            variable.assign(value)
        self.removed = list(found[1])
        return True

    def build(self) -> keras.Model:
        """The last scored candidate with its masked channels removed: a plain, smaller model with its fine-tuned weights."""
        return remove_channels(self.graph, self.removed) if self.removed else copy_model(self.model)


_EVALUATORS: dict[str, tuple[float, CandidateEvaluator]] = {}


def evaluator_for(path: str, data: SegmentationDataset, settings: CandidateSettings, parent: keras.Model | None = None) -> CandidateEvaluator:
    """The evaluator of the parent saved at `path` (built once per process and parent; one parent at a time)."""
    stamp = Path(path).stat().st_mtime if parent is None else 0.0
    cached = _EVALUATORS.get(path)
    if cached is None or cached[0] != stamp or cached[1].data is not data or cached[1].settings != settings:
        _EVALUATORS.clear()  # a greedy step replaces the parent
        keras.backend.clear_session(free_memory=False)
        _EVALUATORS[path] = (stamp, CandidateEvaluator(parent if parent is not None else load_model(path), data, settings))
    return _EVALUATORS[path][1]


def evaluate_candidate(candidate: Candidate, data: SegmentationDataset, settings: CandidateSettings, parent: keras.Model | None = None) -> dict:
    """Narrows, fine-tunes and scores one candidate; returns `{"score", "seconds"}`."""
    started = time.perf_counter()
    evaluator = evaluator_for(candidate.parent, data, settings, parent)
    seed = candidate_seed(settings, candidate.name)
    if not evaluator.can_mask(candidate.parent_config, candidate.config):
        raise ValueError(
            f"Candidate {candidate.name!r} narrows a group whose channels cannot be masked in one order; "
            "searches need every narrowed group to be maskable (see segprune.structured.regularised.channel_gates)."
        )
    score = evaluator.score(candidate.parent_config, candidate.config, seed)
    return {"score": score, "seconds": time.perf_counter() - started}


def build_candidate(candidate: Candidate, data: SegmentationDataset, settings: CandidateSettings, parent: keras.Model | None = None) -> keras.Model:
    """The candidate as a genuinely smaller model, fine-tuned as it was when scored (evaluated again, seeded)."""
    evaluator = evaluator_for(candidate.parent, data, settings, parent)
    seed = candidate_seed(settings, candidate.name)
    if not evaluator.restore(candidate.config, seed):  # scored elsewhere (a worker, or before a resume)
        evaluator.score(candidate.parent_config, candidate.config, seed)
    return evaluator.build()


_WORKER_DATA: SegmentationDataset | None = None


def _start_worker(data_source: str) -> None:
    global _WORKER_DATA
    deterministic_kernels()
    _WORKER_DATA = load_data(data_source)


def _run_in_worker(candidate: Candidate, settings: CandidateSettings) -> dict:
    return evaluate_candidate(candidate, _WORKER_DATA, settings)


class CandidatePool:
    """Evaluates candidates here (`workers=1`) or in `workers` spawned processes that load `data_source`.

    Example:
        >>> with CandidatePool(data, settings, workers=2, data_source="synthetic") as pool:
        ...     results = pool.map(candidates)
    """

    def __init__(self, data: SegmentationDataset, settings: CandidateSettings, workers: int = 1, data_source: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}.")
        if workers > 1 and data_source is None:
            raise ValueError("Evaluating in several processes needs the data's source (a folder or 'synthetic') to load there.")
        self.data = data
        self.settings = settings
        self.workers = workers
        self.executor = None
        self.restore_determinism = not deterministic_kernels()
        if workers > 1:
            context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
            self.executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(data_source,))

    def map(self, candidates: list[Candidate]):
        """Yields (candidate, result) in the order given, as each finishes in turn."""
        if self.executor is None:
            for candidate in candidates:
                yield candidate, evaluate_candidate(candidate, self.data, self.settings)
            return
        futures = [self.executor.submit(_run_in_worker, candidate, self.settings) for candidate in candidates]
        try:
            for candidate, future in zip(candidates, futures):
                yield candidate, future.result()
        finally:  # a caller that stops early (a time limit) leaves nothing queued behind it
            for future in futures:
                future.cancel()

    def __enter__(self) -> CandidatePool:
        return self

    def __exit__(self, *exc) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
        if self.restore_determinism:  # the caller's process gets its kernels back as they were
            deterministic_kernels(False)
