"""A search killed with SIGKILL and resumed ends where an uninterrupted one does."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segprune.cli import main
from segprune.models import unet
from tests.resume_harness import sigkill_once

REPO_ROOT = Path(__file__).resolve().parents[2]


def _arguments(source: Path, data: Path, out: Path, method: str, *extra: str) -> list[str]:
    return ["prune", str(source), "--method", method, "--target", "flops=0.5",
            "--data", str(data), "--candidate-steps", "0", "--finetune-epochs", "0", "--image-size", "64",
            "--seed", "3", *extra, "--out", str(out)]


def _in_process(arguments: list[str], monkeypatch) -> None:
    """Runs `segprune ...` here: only the run that is killed needs a process of its own. The final timing of
    the result (ONNX Runtime) plays no part in what is compared, so a stand-in skips it."""
    untimed = lambda dense, pruned, settings: {"dense_ms": 1.0, "pruned_ms": 1.0, "speedup": 1.0, "latency_fraction": 1.0}  # noqa: E731
    for module in ("segprune.search.greedy", "segprune.search.random_search"):  # modules, not the functions of that name
        monkeypatch.setattr(importlib.import_module(module), "measure", untimed)
    assert main(arguments) == 0


def _done(out: Path) -> dict:
    records = [json.loads(line) for line in out.with_suffix(".search").joinpath("search.jsonl").read_text().splitlines()]
    assert records[-1]["type"] == "done"
    return records[-1]


def _candidates(out: Path) -> int:
    log = out.with_suffix(".search") / "search.jsonl"
    return log.read_text().count('"type": "candidate"') if log.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("method,extra,kill_after", [
    ("greedy", ["--iterations", "2"], 4),
    # the same log and replay as greedy's; `make test-all` runs it (make test's 12 minutes hold three backends)
    pytest.param("random-search", ["--candidates", "5"], 2, marks=pytest.mark.exhaustive),
])
def test_sigkill_then_resume_chooses_what_an_uninterrupted_run_chooses(make_folder_dataset, tmp_path, monkeypatch, method, extra, kill_after):
    data = make_folder_dataset(count=8)
    source = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=16, depth=1).save(source)
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    reference = tmp_path / "reference.keras"
    _in_process(_arguments(source, data, reference, method, *extra), monkeypatch)

    interrupted = tmp_path / "interrupted.keras"
    log = tmp_path / "child.stderr"
    process = subprocess.Popen([sys.executable, "-m", "segprune.cli", *_arguments(source, data, interrupted, method, *extra)], env=environment,
                               stdout=subprocess.DEVNULL, stderr=log.open("w"))
    sigkill_once(process, lambda: _candidates(interrupted) >= kill_after, f"{kill_after} candidates logged", timeout=300, log=log)
    evaluated_before = _candidates(interrupted)
    assert not interrupted.exists()

    _in_process(_arguments(source, data, interrupted, method, *extra, "--resume"), monkeypatch)
    assert _done(interrupted)["config"] == _done(reference)["config"]
    assert _candidates(interrupted) == _candidates(reference), "finished candidates were not evaluated again"
    assert evaluated_before >= kill_after and interrupted.exists()
