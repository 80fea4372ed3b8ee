"""A search's folder: its log, its budget and the dense model it starts from, created or reopened to resume."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import keras

from segprune.graph.groups import ChannelGraph
from segprune.search.budget import Budget
from segprune.search.evaluation import CandidateSettings
from segprune.search.kinds import network_timer, save_parent
from segprune.search.log import SearchLog
from segprune.search.settings import RUN_SETTINGS, SearchSettings


def open_search(
    model: keras.Model, graph: ChannelGraph, folder: str | Path, method: dict, settings: SearchSettings, candidate_settings: CandidateSettings,
    resume: bool,
) -> tuple[SearchLog, Budget, Path]:
    """Creates (or reopens, to resume) a search folder: its log, its budget, and the dense model saved in it.

    `method` holds the method's own settings for the log header; `RUN_SETTINGS` (workers, executor, time
    limit, timing the result) are left out of the header, since they do not change what a search chooses.
    `graph` is the channel graph of `model`'s network (the one the search narrows), traced at `settings.image_size`
    (`Budget`): the caller's, so that `segprune.prune` traces the dense network once.
    """
    folder = Path(folder)
    existing = set(folder.iterdir()) if folder.is_dir() else None
    folder.mkdir(parents=True, exist_ok=True)
    candidates = asdict(candidate_settings)
    candidates["batches"] = asdict(candidate_settings.batches)
    header = {**method, **asdict(settings), **candidates}
    for name in RUN_SETTINGS:
        header.pop(name)
    try:
        log = SearchLog(folder / "search.jsonl", header, resume)
        budget = Budget(graph, settings, folder, network_timer(model, settings))  # refuses a target the narrowest configuration cannot meet
    except BaseException:  # a search refused before its first candidate leaves nothing of its own behind
        _remove_new(folder, existing)
        raise
    dense_path = folder / "dense.keras"
    if not dense_path.exists():
        save_parent(model, dense_path)  # a Mask R-CNN as one file that load_parent reads back
    return log, budget, dense_path


def _remove_new(folder: Path, existing: set[Path] | None) -> None:
    """Removes what this call added: the whole folder if it made it, else the files that were not there before."""
    if existing is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in set(folder.iterdir()) - existing:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
