"""The sweep: rows for every method and budget, resume, tables, balance point, and a report that renders."""

import json
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest

from segprune.data import BatchConfig, synthetic_dataset
from segprune.experiments import SweepConfig, run_sweep
from segprune.models import unet
from segprune.report import balance_point, build_report
from segprune.report.plots import FALSE_NEGATIVE, FALSE_POSITIVE
from segprune.runtime.benchmark import file_latency
from segprune.training import TrainConfig
from tests.conftest import NOT_RENDERED

SMALL_PATCHES = TrainConfig(batches=BatchConfig(batch_size=4, image_size=32))  # fine-tuning cost, not its quality, is tested


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    keras.utils.set_random_seed(0)  # a module fixture is built before the autouse seeding: its networks, and so their errors, are fixed here
    out = tmp_path_factory.mktemp("sweep")
    data = synthetic_dataset(num_train=8, num_val=2, num_test=3, image_size=64, channels=1)
    model = unet(num_classes=4, input_channels=1, base_filters=16, depth=2)
    config = SweepConfig(methods=("oneshot-l1", "oneshot-random", "classical-otsu"), budgets=(0.5, 0.25), finetune_epochs=1, image_size=64,
                         train=SMALL_PATCHES, distill=None)  # distilled fine-tuning in a sweep: tests/test_demo.py
    messages, timed = [], {}

    def recording_latency(paths, **settings):
        latencies = file_latency(paths, **settings)
        timed.update({Path(path).stem: latency.median_ms for path, latency in zip(paths, latencies)})
        return latencies

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("segprune.experiments.deployment.file_latency", recording_latency)
        rows = run_sweep(model, data, out, config, progress=messages.append)
    return out, data, model, config, rows, messages, timed


@pytest.mark.slow  # the module's sweep trains four networks
def test_rows_tables_and_latency(swept):
    out, _, _, _, rows, messages, timed = swept
    assert [(r["method"], r["budget"]) for r in rows] == [
        ("dense", None), ("oneshot-l1", 0.5), ("oneshot-l1", 0.25), ("oneshot-random", 0.5), ("oneshot-random", 0.25), ("classical-otsu", None)
    ]
    assert len(messages) >= 6
    networks = [r for r in rows if r["model_path"]]
    assert sorted(timed) == sorted(Path(r["model_path"]).stem for r in networks), "every network is timed, in one run"
    dense_ms = timed[Path(networks[0]["model_path"]).stem]
    for row in networks:
        assert row["latency_ms"] == timed[Path(row["model_path"]).stem], "each row carries its own model's time"
        assert row["speedup"] == pytest.approx(dense_ms / row["latency_ms"])
    assert rows[-1]["latency_ms"] is None and rows[-1]["speedup"] is None, "classical rows are not timed on ONNX Runtime"
    assert all(r["macs_ratio"] <= r["budget"] for r in networks[1:])
    assert json.loads((out / "results.json").read_text()) == rows
    assert (out / "results.csv").read_text().splitlines()[0].startswith("method,budget,dice")


@pytest.mark.slow  # the module's sweep trains four networks
def test_resume_skips_finished_candidates(swept):
    out, data, model, config, rows, _, _ = swept
    messages = []
    again = run_sweep(model, data, out, config, progress=messages.append)
    assert sum("resumed" in message for message in messages) == len(rows)
    assert [r["dice"] for r in again] == [r["dice"] for r in rows]


def test_balance_point_is_the_fastest_within_tolerance():
    rows = [
        {"method": "dense", "budget": None, "dice": 0.90, "latency_ms": 10.0, "model_path": "d"},
        {"method": "a", "budget": 0.5, "dice": 0.895, "latency_ms": 6.0, "model_path": "a"},
        {"method": "b", "budget": 0.25, "dice": 0.88, "latency_ms": 3.0, "model_path": "b"},
        {"method": "classical-otsu", "budget": None, "dice": 0.95, "latency_ms": None, "model_path": None},
    ]
    assert balance_point(rows, tolerance=1.0)["method"] == "a"
    assert balance_point(rows, tolerance=2.5)["method"] == "b"


@pytest.fixture(scope="module")
def report(swept):
    out, data, _, config, rows, _, _ = swept
    return build_report(rows, data, out, config.tolerance, "test sweep")


@pytest.mark.slow  # the module's sweep trains four networks
def test_report_opens_with_the_balance_point_and_marks_its_row(swept, report):
    _, _, _, config, rows, _, _ = swept
    path, balance = report
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 3
    measured = page.split('id="measured">')[1].split("</p>")[0]
    assert measured.startswith("Accuracy on the 3 test images of ") and "(split: 8 train, 2 val, 3 test images;" in measured
    assert "per 1x64x64 input image" in measured and "<th>MACs at 64x64</th>" in page
    expected = balance_point(rows, config.tolerance)
    assert balance is expected
    headline = page.split('id="balance-sentence">')[1].split("</p>")[0]
    dense = rows[0]
    marked = page.split('<tr class="balance">')[1].split("</tr>")[0]
    if expected["method"] == "dense":
        assert headline.startswith("No smaller network kept the full model&#x27;s accuracy"), headline
        assert marked.startswith("<td>dense</td><td>-</td>"), marked
    else:
        assert f"Dice {expected['dice']:.3f} [" in headline and f"instead of {dense['dice']:.3f} [" in headline, headline  # each with its interval
        assert marked.startswith(f"<td>{expected['method']}</td><td>{expected['budget']:g}</td>"), marked


@pytest.mark.slow  # the module's sweep trains four networks
def test_report_renders_in_headless_chromium(report, tmp_path):
    path, _ = report
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip(f"{NOT_RENDERED}: Debian's chromium is not installed (make chromium installs it where it can)")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=5000", "--dump-dom", path.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert 'data-figures="rendered"' in dom and 'data-figure-count="3"' in dom
    screenshot = tmp_path / "report.png"
    subprocess.run([*command[:-2], f"--screenshot={screenshot}", "--window-size=1200,4000", path.as_uri()], capture_output=True, timeout=120)
    assert screenshot.exists() and screenshot.stat().st_size > 10_000
    colours = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(screenshot).convert("RGB")).astype(int)
    assert colours.mean(axis=2).std() > 10, "the screenshot is not blank"
    # false positives and false negatives in their own colours: each in the legend (a swatch is ~160 pixels), and the overlays
    # paint errors far beyond the swatches (which kind depends on these barely trained networks; tests/report/test_html.py
    # checks each kind on a mask it sets)
    shown = {name: (np.abs(colours - np.array(colour) * 255).max(axis=2) <= 12).sum()
             for name, colour in (("false positives", FALSE_POSITIVE), ("false negatives", FALSE_NEGATIVE))}
    assert min(shown.values()) >= 100 and sum(shown.values()) > 2000, shown


@pytest.mark.slow
def test_search_methods_take_part(tmp_path):
    data = synthetic_dataset(num_train=8, num_val=2, num_test=3, image_size=64, channels=1)
    model = unet(num_classes=4, input_channels=1, base_filters=16, depth=1)
    # greedy: random search enters the sweep by the same dispatch (tests/search cover it on its own)
    config = SweepConfig(methods=("greedy",), budgets=(0.5,), finetune_epochs=0, image_size=64, search_candidates=2, train=SMALL_PATCHES)
    messages = []
    rows = run_sweep(model, data, tmp_path, config, progress=messages.append)
    assert [r["method"] for r in rows] == ["dense", "greedy"]
    assert all(r["macs_ratio"] <= 0.5 for r in rows[1:])
    assert all(r["speedup"] == pytest.approx(rows[0]["latency_ms"] / r["latency_ms"]) for r in rows[1:])
    log = [json.loads(line) for line in (tmp_path / "search" / "greedy-0.5" / "search.jsonl").read_text().splitlines()]
    # the search inside the sweep shows its plan and every candidate, named by its cell
    evaluated = sum(record["type"] == "candidate" for record in log)
    assert sum(message.startswith("  greedy 0.5: greedy: about ") for message in messages) == 1
    assert sum(message.startswith("  greedy 0.5: step ") for message in messages) == evaluated
    assert rows[1]["search_seconds"] > 0, "a searched row's cost counts its search"
