"""Evaluating a candidate configuration: build it from a parent model, fine-tune briefly, score on validation.

Candidates can be evaluated in this process or in worker processes (`CandidatePool(workers=N)`). Each
evaluation seeds itself from the search seed and the candidate's identity, so the score of a candidate does
not depend on which process ran it, in which order, or whether the search was resumed.
"""

from __future__ import annotations

import math
import multiprocessing
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import keras

from segprune._io import save_model
from segprune.backend.determinism import deterministic_kernels
from segprune.data import load_data
from segprune.data.dataset import SegmentationDataset
from segprune.data.pipeline import BatchConfig, TrainingBatches
from segprune.inference import input_channels
from segprune.losses import CrossEntropyDiceLoss
from segprune.metrics import evaluate
from segprune.models.loading import load_model
from segprune.models.outputs import output_kind
from segprune.search.space import Configuration, shrink

EAGER_STEPS = 100


@dataclass(frozen=True)
class CandidateSettings:
    """How each candidate is judged.

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
    batches: BatchConfig = BatchConfig()
    split: str = "val"
    seed: int = 0


@dataclass(frozen=True)
class Candidate:
    """One configuration to evaluate, derived from the model saved at `parent` (whose widths are `parent_config`)."""

    name: str
    parent: str
    parent_config: Configuration
    config: Configuration
    save_to: str | None = None


def candidate_seed(settings: CandidateSettings, name: str) -> int:
    return (settings.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


def short_finetune(model: keras.Model, data: SegmentationDataset, steps: int, settings: CandidateSettings, seed: int) -> None:
    """`steps` Adam steps on the training split at a constant learning rate (segprune's CE + Dice loss)."""
    if steps <= 0:
        return
    batches = TrainingBatches(data, "train", input_channels(model), replace(settings.batches, seed=seed))
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=CrossEntropyDiceLoss(output_kind(model), data.ignore_index),
        # Tracing a training graph for every candidate costs seconds; a few eager steps cost less.
        run_eagerly=steps <= EAGER_STEPS,
    )
    per_epoch = min(steps, batches.num_batches)
    model.fit(batches, epochs=math.ceil(steps / per_epoch), steps_per_epoch=per_epoch, verbose=0)


_PARENTS: dict[str, tuple[float, keras.Model]] = {}


def _parent(path: str) -> keras.Model:
    stamp = Path(path).stat().st_mtime
    cached = _PARENTS.get(path)
    if cached is None or cached[0] != stamp:
        _PARENTS.clear()  # one parent at a time: a greedy step replaces it
        _PARENTS[path] = (stamp, load_model(path))
    return _PARENTS[path][1]


def evaluate_candidate(candidate: Candidate, data: SegmentationDataset, settings: CandidateSettings) -> dict:
    """Builds, fine-tunes and scores one candidate; returns `{"score", "seconds"}` (and saves it if asked)."""
    started = time.perf_counter()
    seed = candidate_seed(settings, candidate.name)
    keras.utils.set_random_seed(seed)
    model = shrink(_parent(candidate.parent), candidate.parent_config, candidate.config, settings.importance, data)
    short_finetune(model, data, settings.finetune_steps, settings, seed)
    score = evaluate(model, data, settings.split).dice
    if candidate.save_to:
        save_model(model, candidate.save_to)
    keras.backend.clear_session(free_memory=False)
    return {"score": float(score), "seconds": time.perf_counter() - started}


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
        for candidate, future in zip(candidates, futures):
            yield candidate, future.result()

    def __enter__(self) -> CandidatePool:
        return self

    def __exit__(self, *exc) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
        if self.restore_determinism:  # the caller's process gets its kernels back as they were
            deterministic_kernels(False)
