"""Candidates as Ray tasks on a local 2-CPU cluster: the same choices as one process, a dead worker's candidate
retried and counted once, a killed driver resumed without evaluating a finished candidate again."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from segprune.data import BatchConfig  # noqa: E402
from segprune.models import unet  # noqa: E402
from segprune.search.evaluation import CandidateSettings  # noqa: E402
from segprune.search.greedy import greedy_search  # noqa: E402
from segprune.search.random_search import random_search  # noqa: E402
from segprune.search.settings import SearchSettings  # noqa: E402
from tests.resume_harness import sigkill_once  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL = SearchSettings(target="flops=0.5", image_size=64, final_epochs=0, time_result=False)
RAY = replace(LOCAL, executor="ray")
CANDIDATES = CandidateSettings(finetune_steps=2, batches=BatchConfig(batch_size=4, image_size=32))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of 2 CPUs for the module (its workers keep TensorFlow loaded between tests)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _candidates(folder: Path) -> list[dict]:
    log = folder / "search.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return [record for record in map(json.loads, lines) if record["type"] == "candidate"]


def test_random_and_greedy_search_choose_on_ray_what_one_process_chooses(cluster, data, model, model_graph, tmp_path):
    here = random_search(model, data, tmp_path / "here", LOCAL, CANDIDATES, num_candidates=4, graph=model_graph)
    there = random_search(model, data, tmp_path / "there", RAY, CANDIDATES, num_candidates=4, graph=model_graph)
    assert there.config == here.config
    assert [r["score"] for r in _candidates(tmp_path / "there")] == pytest.approx([r["score"] for r in _candidates(tmp_path / "here")], abs=1e-6)
    here = greedy_search(model, data, tmp_path / "greedy-here", LOCAL, CANDIDATES, iterations=2, graph=model_graph)
    there = greedy_search(model, data, tmp_path / "greedy-there", RAY, CANDIDATES, iterations=2, graph=model_graph)
    assert there.config == here.config
    assert len(_candidates(tmp_path / "greedy-there")) == len(_candidates(tmp_path / "greedy-here"))


def _ray_workers_running_a_candidate() -> list[psutil.Process]:
    """Worker processes of this test's own cluster (our descendants) that are inside a candidate right now."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "_evaluate_on_ray" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_a_worker_killed_mid_candidate_has_it_retried_and_counted_once(cluster, data, model, model_graph, tmp_path):
    reference = random_search(model, data, tmp_path / "reference", LOCAL, CANDIDATES, num_candidates=4, graph=model_graph)
    outcome = {}
    search = threading.Thread(
        target=lambda: outcome.update(result=random_search(model, data, tmp_path / "killed", RAY, CANDIDATES, num_candidates=4, graph=model_graph))
    )
    search.start()
    deadline, killed = time.monotonic() + 120, None
    while killed is None and search.is_alive() and time.monotonic() < deadline:
        for worker in _ray_workers_running_a_candidate():
            try:  # it may have finished its candidate since it was listed: then look again
                worker.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                continue
            killed = worker
            break
        time.sleep(0.02)
    assert killed is not None, f"no worker was caught inside a candidate within 120 s (the search {'still runs' if search.is_alive() else 'had ended'})"
    _, still_running = psutil.wait_procs([killed], timeout=30)
    assert not still_running, f"worker {killed.pid} outlived its SIGKILL"
    search.join(300)
    assert not search.is_alive(), "the search did not end within 300 s of the worker's kill"
    assert outcome["result"].config == reference.config
    indices = [r["index"] for r in _candidates(tmp_path / "killed")]
    assert sorted(indices) == [0, 1, 2, 3], "every candidate logged exactly once"


def _command(source: Path, data: Path, out: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "segprune.cli", "prune", str(source), "--method", "random-search", "--target", "flops=0.5",
            "--data", str(data), "--candidate-steps", "2", "--finetune-epochs", "0", "--image-size", "64", "--candidates", "6",
            "--executor", "ray", "--ray-address", address, *extra, "--out", str(out)]


def test_a_killed_driver_resumes_without_evaluating_a_finished_candidate_again(cluster, make_folder_dataset, tmp_path):
    root = make_folder_dataset(count=8)
    source = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=16, depth=1).save(source)
    out = tmp_path / "pruned.keras"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = tmp_path / "driver.stderr"
    driver = subprocess.Popen(_command(source, root, out, cluster), env=environment, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    folder = out.with_suffix(".search")
    sigkill_once(driver, lambda: len(_candidates(folder)) >= 2, "2 candidates logged", timeout=300, log=log)
    finished = {r["index"] for r in _candidates(folder)}
    resumed = subprocess.run(_command(source, root, out, cluster, "--resume"), env=environment, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    indices = [r["index"] for r in _candidates(folder)]
    assert sorted(indices) == list(range(6)) and finished <= set(indices), "no finished candidate was evaluated again"
    assert out.exists()


def test_sweep_cells_as_ray_tasks_give_the_rows_and_model_files_one_process_gives(cluster, data, model, tmp_path):
    # Here rather than under tests/experiments: it shares this module's cluster and its warm workers.
    from segprune.experiments import SweepConfig, run_sweep

    local = SweepConfig(methods=("oneshot-l1", "classical-otsu"), budgets=(0.5,), finetune_epochs=1, image_size=32)
    here = run_sweep(model, data, tmp_path / "here", local)
    there = run_sweep(model, data, tmp_path / "there", replace(local, executor="ray"))
    assert [(r["method"], r["budget"]) for r in there] == [(r["method"], r["budget"]) for r in here] == [
        ("dense", None), ("oneshot-l1", 0.5), ("classical-otsu", None)]
    for mine, theirs in zip(here, there):
        assert theirs["dice"] == pytest.approx(mine["dice"], abs=1e-6) and theirs["macs_ratio"] == mine["macs_ratio"]
        assert theirs["params"] == mine["params"]
        if mine["model_path"] is not None:  # written by the driver where a local sweep writes it, and timed there
            assert Path(theirs["model_path"]) == tmp_path / "there" / Path(mine["model_path"]).relative_to(tmp_path / "here")
            assert Path(theirs["model_path"]).exists() and theirs["latency_ms"] is not None
    messages = []
    run_sweep(model, data, tmp_path / "there", replace(local, executor="ray"), progress=messages.append)
    assert sum("done earlier" in message for message in messages) == 3, "a resumed Ray sweep runs no finished cell again"
