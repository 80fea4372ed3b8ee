"""Where candidates are evaluated: this process, local worker processes, or Ray tasks on a cluster.

Every pool has one method, `map(candidates)`, that yields `(candidate, outcome)` in the order given; the
search logs an outcome only when `map` hands it over, so a candidate retried after a worker died is
counted once. Closing the generator early (a time limit) cancels what has not started.

Ray (`executor="ray"`, the optional extra `segprune[ray]`): every candidate is a task with
`max_retries`, so a worker that dies mid-candidate has it rerun elsewhere; candidates seed themselves, so a
rerun scores the same. Parent models travel as `.keras` bytes through Ray's object store (put once per
greedy step); tasks return only scores, and the driver, which alone writes the log, builds the chosen
candidate itself (seeded: the weights it was scored with): nothing needs a shared file system. The data reach workers by their source (`data_source`: a built-in
name, or a path every node sees) or, without one, as an in-memory copy through the object store.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import keras

from segprune.backend.determinism import deterministic_kernels
from segprune.data import DataSource, load_data
from segprune.data.dataset import SegmentationDataset
from segprune.data.instances import InstanceDataset
from segprune.models.loading import load_model
from segprune.search.evaluation import Candidate, CandidatePool, CandidateSettings, build_candidate, evaluate_candidate
from segprune.search.instance_evaluation import InstanceCandidatePool, build_instance_candidate
from segprune.search.settings import SearchSettings

RAY_RETRIES = 3  # reruns of a candidate whose worker died


def open_pool(data: SegmentationDataset, candidate_settings: CandidateSettings, settings: SearchSettings, data_source: str | None):
    """The pool `settings.executor` names: a `CandidatePool` (`"local"`) or a `RayPool` (`"ray"`); instance data
    (a Mask R-CNN's search) get an `InstanceCandidatePool`, which builds and trains each candidate detector here."""
    if isinstance(data, InstanceDataset):
        return InstanceCandidatePool(data, candidate_settings, settings)
    if settings.executor == "ray":
        return RayPool(data, candidate_settings, data_source, settings.ray_address)
    return CandidatePool(data, candidate_settings, settings.workers, data_source)


def build_chosen(candidate: Candidate, data: SegmentationDataset | InstanceDataset, settings: CandidateSettings) -> keras.Model:
    """The chosen candidate as a genuinely smaller model, as it was scored: a segmentation network or, for
    instance data, a Mask R-CNN whose trunk is narrowed."""
    if isinstance(data, InstanceDataset):
        return build_instance_candidate(candidate, data, settings)
    return build_candidate(candidate, data, settings)


class RayPool:
    """Evaluates every candidate as a Ray task, on the cluster at `address` or on a local one it starts.

    Example:
        >>> with RayPool(data, settings, data_source="nuclei") as pool:
        ...     results = list(pool.map(candidates))
    """

    def __init__(self, data: SegmentationDataset, settings: CandidateSettings, data_source: str | None = None, address: str | None = None) -> None:
        ray = import_ray()
        self.ray = ray
        self.settings = settings
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        # Wrapped in a list so that Ray hands the reference itself to the task (each worker resolves it once).
        self.data = [data_source] if data_source is not None else [ray.put(snapshot_dataset(data))]
        self.task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES, retry_exceptions=False)(_evaluate_on_ray)
        self.parents: dict[str, tuple[float, object]] = {}

    def _parent_bytes(self, path: str):
        stamp = Path(path).stat().st_mtime
        cached = self.parents.get(path)
        if cached is None or cached[0] != stamp:
            self.parents = {path: (stamp, self.ray.put(Path(path).read_bytes()))}  # one parent at a time
        return self.parents[path][1]

    def map(self, candidates: list[Candidate]) -> Iterator[tuple[Candidate, dict]]:
        references = [self.task.remote(candidate, [self._parent_bytes(candidate.parent)], self.data, self.settings) for candidate in candidates]
        handed = 0
        try:
            for candidate, reference in zip(candidates, references):
                outcome = self.ray.get(reference)
                handed += 1
                yield candidate, outcome
        finally:
            left = references[handed:]
            if left:  # closed early: cancel what has not finished (cancelling a finished task trips Ray 2.60)
                _, unfinished = self.ray.wait(left, num_returns=len(left), timeout=0)
                for reference in unfinished:
                    self.ray.cancel(reference)

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        if self.started_ray:
            self.ray.shutdown()


def import_ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError("executor='ray' needs Ray: pip install 'segprune[ray]' (or pip install ray).") from error
    return ray


def snapshot_dataset(data: SegmentationDataset) -> dict:
    """`data` as plain values that pickle (a dataset's reader may be a closure over local files, and it is cached)."""
    samples = {sample_id: data.load(sample_id) for ids in data.splits.values() for sample_id in ids}
    return {"name": data.name, "num_classes": data.num_classes, "image_channels": data.image_channels,
            "splits": {split: list(ids) for split, ids in data.splits.items()}, "ignore_index": data.ignore_index, "samples": samples}


def dataset_from_snapshot(snapshot: dict) -> SegmentationDataset:
    fields = dict(snapshot)
    samples = fields.pop("samples")
    return SegmentationDataset(reader=samples.__getitem__, **fields)


# A Ray worker process runs many tasks: the data and the current parent are loaded once per process.
_WORKER: dict = {}


def _evaluate_on_ray(candidate: Candidate, parent: list, data: list, settings: CandidateSettings) -> dict:
    ray = import_ray()
    if not _WORKER:
        deterministic_kernels()
    by_source = isinstance(data[0], (str, DataSource))  # else a reference to a snapshot of the data
    data_key = data[0] if by_source else data[0].hex()
    if _WORKER.get("data_key") != data_key:
        _WORKER["data"] = load_data(data[0]) if by_source else dataset_from_snapshot(ray.get(data[0]))
        _WORKER["data_key"] = data_key
    parent_key = parent[0].hex()
    if _WORKER.get("parent_key") != parent_key:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "parent.keras"
            path.write_bytes(ray.get(parent[0]))
            _WORKER["parent"] = load_model(path)
        _WORKER["parent_key"] = parent_key
    # The evaluator is cached by the parent's object id (a path on the driver may not exist here).
    return evaluate_candidate(replace(candidate, parent=parent_key), _WORKER["data"], settings, parent=_WORKER["parent"])
