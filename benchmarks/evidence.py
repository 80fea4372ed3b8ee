"""The evidence behind segprune's defaults: dense vs pruned U-Nets, with intervals, timed as deployed.

For one dataset and one trained dense model this runs, cell by cell: the dense model; one-shot L1 (and, with
--methods, greedy and random search) at each MACs budget, fine-tuned --epochs with and without distillation
(`segprune.prune` with the shared defaults of `segprune.defaults`, seed 0). Every model is scored on the test split
with its 95% bootstrap interval over test images, and every pruned one with its paired loss interval against dense
(the same images resampled for both, `segprune.intervals`). Every model is deployed as ONNX Runtime fp32 and
OpenVINO f32, bf16 and int8 (`segprune.runtime.quantize`, whose bf16 and int8 Dice are checked against fp32 on the
test split), and all files are timed together in interleaved rounds (`segprune.runtime.benchmark`), --repeats
times: each cell gives the median of the repeats' medians and their spread (min-max), the precision that executed,
and the speed-up over dense on ONNX Runtime fp32.

Resumable: each finished cell is a line of `<out>/cells.jsonl` and is skipped on rerun; an interrupted fine-tune
resumes from its last epoch (its state is kept beside `<out>/models/<cell>.keras`). The timing is redone whenever
the set of models changes. Only the timed rounds hold the CPU lock the other benchmarks use
(/tmp/segprune-cpu.lock, taken here with flock) so that the hour of fine-tuning does not lock out everyone else.

    .venv/bin/python benchmarks/evidence.py --data brain --dense /tmp/brain_unet300.keras --out /tmp/evidence/brain
    .venv/bin/python benchmarks/evidence.py --data nuclei --dense /tmp/evidence/nuclei_unet.keras --out /tmp/evidence/nuclei
    .venv/bin/python benchmarks/evidence.py --data brain --dense /tmp/brain_unet300.keras --out /tmp/evidence/brain \\
        --methods greedy random-search --budgets 0.25 --distill on --search-minutes 12   # searches join the same table

`--no-timing` scores only (several runs may then fine-tune side by side); `--time-only` later times every finished
cell of the folder together. The table is printed at the end of every run (from finished cells alone with
--table-only), followed by the pairs of rows that cannot be told apart: those whose paired Dice difference interval
holds 0.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from segprune import defaults, load_data, prune
from segprune.cost import flops
from segprune.intervals import paired_loss
from segprune.metrics import evaluate
from segprune.models import load_model
from segprune.runtime.benchmark import interleaved_timings, random_input
from segprune.runtime.export import export_model, open_runner
from segprune.runtime.quantize import quantize
from segprune.training.run_state import run_folder

CPU_LOCK = Path("/tmp/segprune-cpu.lock")
METHODS = ("l1", "greedy", "random-search")
# (column, runtime, precision asked, file suffix); int8 and bf16 files come from quantize, fp32 from export_model.
DEPLOYMENTS = (
    ("ORT fp32", "onnxruntime", "fp32", ".onnx"),
    ("OV f32", "openvino", "fp32", "-f32.xml"),
    ("OV bf16", "openvino", "bf16", "-bf16.xml"),
    ("OV int8", "openvino", "int8", "-int8.xml"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="brain", help="dataset (segprune DATA: nuclei, brain, a folder)")
    parser.add_argument("--dense", required=True, help="the trained dense model (.keras)")
    parser.add_argument("--out", required=True, help="folder for cells.jsonl, models and deployed files")
    parser.add_argument("--methods", nargs="+", default=["l1"], choices=METHODS, help="pruning methods (default l1)")
    parser.add_argument("--budgets", nargs="+", type=float, default=list(defaults.SWEEP_BUDGETS), help="MACs budgets (default 0.5 0.25 0.125)")
    parser.add_argument("--distill", nargs="+", default=["on", "off"], choices=("on", "off"), help="fine-tune with distillation, without, or both")
    parser.add_argument("--epochs", type=int, default=40, help="fine-tune epochs (default 40; early stopping as TrainConfig's default)")
    parser.add_argument("--ignore", nargs="*", default=[], help="layers kept whole (e.g. patch_embedding: a vision transformer's token width)")
    parser.add_argument("--search-minutes", type=float, default=None, help="stop each search at its best so far after this long (default: run it whole)")
    parser.add_argument("--threads", type=int, default=defaults.THREADS)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-timing", action="store_true", help="score only; time later")
    parser.add_argument("--time-only", action="store_true", help="time every finished cell (no new cells), print the table")
    parser.add_argument("--retime", action="store_true", help="time again even if these cells were timed (a quieter machine)")
    parser.add_argument("--table-only", action="store_true", help="print the table of finished cells and stop")
    arguments = parser.parse_args()

    out = Path(arguments.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "deploy").mkdir(exist_ok=True)
    log = out / "cells.jsonl"
    if arguments.table_only:
        print_table(read_cells(log), arguments)
        return
    if arguments.time_only:
        time_cells(read_cells(log), [key for key in read_cells(log) if not key.startswith("timing:")], log, arguments)
        print_table(read_cells(log), arguments)
        return
    data = load_data(arguments.data)
    dense = load_model(arguments.dense)
    plan = [("dense", None, None)] + [
        (method, budget, distill) for method in arguments.methods for budget in arguments.budgets for distill in arguments.distill
    ]
    started = time.perf_counter()
    spent: list[float] = []
    for index, (method, budget, distill) in enumerate(plan):
        key = cell_key(method, budget, distill, arguments.epochs)
        if key in read_cells(log):
            continue
        cell_start = time.perf_counter()
        _progress(f"cell {index + 1}/{len(plan)} {key}: starting")
        row = run_cell(key, method, budget, distill, dense, data, out, arguments)
        append_cell(log, row)
        spent.append(time.perf_counter() - cell_start)
        remaining = sum(1 for m, b, d in plan[index + 1 :] if cell_key(m, b, d, arguments.epochs) not in read_cells(log))
        left = f"about {remaining * np.mean(spent[1:] or spent) / 60:.0f} min left" if remaining else "no cells left"
        _progress(f"cell {index + 1}/{len(plan)} {key} done in {spent[-1] / 60:.1f} min ({(time.perf_counter() - started) / 60:.1f} min in all); {remaining} cells, {left}")
    cells = read_cells(log)
    if not arguments.no_timing:
        keys = [cell_key(m, b, d, arguments.epochs) for m, b, d in plan]
        time_cells(cells, keys, log, arguments)
        cells = read_cells(log)
    print_table(cells, arguments)


def cell_key(method: str, budget: float | None, distill: str | None, epochs: int) -> str:
    return "dense" if method == "dense" else f"{method}-{budget:g}-distill-{distill}-{epochs}ep"


def read_cells(log: Path) -> dict[str, dict]:
    """The finished cells by key (a later line of the same key wins: a redone timing)."""
    if not log.exists():
        return {}
    return {row["key"]: row for row in map(json.loads, log.read_text().splitlines()) if row}


def append_cell(log: Path, row: dict) -> None:
    with log.open("a") as stream:
        stream.write(json.dumps(row) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def run_cell(key: str, method: str, budget, distill, dense, data, out: Path, arguments) -> dict:
    """Prunes and fine-tunes (unless dense), scores with intervals, deploys and checks bf16 / int8 Dice."""
    height, width = data.load(data.ids("test")[0])[0].shape[:2]
    row = {"key": key, "method": method, "budget": budget, "distill": distill, "data": arguments.data, "dense_file": arguments.dense}
    if method == "dense":
        model, seconds = dense, 0.0
    else:
        checkpoint = out / "models" / f"{key}.keras"
        search_folder = out / "search" / key
        _share_search(out / "search", method, budget, distill, arguments.epochs, search_folder)
        settings = {"folder": search_folder, "max_minutes": arguments.search_minutes} if method != "l1" else {}
        resume = run_folder(checkpoint).exists() or (method != "l1" and search_folder.exists())
        result = prune(
            dense, method, target=f"flops={budget}", data=data, finetune_epochs=arguments.epochs, distill=distill == "on", ignore=arguments.ignore,
            seed=defaults.SEED, checkpoint_path=checkpoint, resume=resume, **settings,
        )
        model, seconds = result.model, result.seconds
        row.update(epochs_run=result.finetune_epochs, finetune_seconds=result.finetune_seconds, notes=result.notes)
    evaluation = evaluate(model, data, "test")
    row.update(
        seconds=seconds,
        macs=flops(model, (height, width)).macs,
        dense_macs=flops(dense, (height, width)).macs,
        image_size=[int(height), int(width)],
        evaluation=evaluation.to_dict(),
        image_counts=evaluation.image_counts.tolist(),
    )
    row["deployed"] = deploy(model, key, data, out / "deploy", (1, int(height), int(width)), arguments.threads)
    return row


def _share_search(searches: Path, method: str, budget, distill, epochs: int, folder: Path) -> None:
    """Starts `folder` from the same method and budget's search with the other distillation setting, if one exists.

    Distillation only changes the fine-tune after a search (the search log's header holds no distillation), so the
    cell with distillation off resumes the finished search of the cell with it on (and the other way round) instead
    of spending the same minutes again; the resumed search replays its log to the same pruned model."""
    if method == "l1" or folder.exists():
        return
    other = searches / cell_key(method, budget, "off" if distill == "on" else "on", epochs)
    if (other / "search.jsonl").exists():
        _progress(f"{folder.name}: resuming the search of {other.name} (distillation changes only the fine-tune)")
        shutil.copytree(other, folder)


def deploy(model, key: str, data, folder: Path, shape: tuple[int, int, int], threads: int) -> dict:
    """Writes the four deployments of `model` at `shape`; bf16 and int8 with their Dice next to fp32's."""
    deployed = {}
    for column, runtime, precision, suffix in DEPLOYMENTS:
        path = folder / f"{key}{suffix}"
        entry = {"path": str(path), "runtime": runtime, "precision": precision}
        if precision == "fp32":
            export_model(model, path, "onnx" if runtime == "onnxruntime" else "openvino", input_shape=shape)
        else:  # tolerance 100 points: written whatever it loses, the loss is reported
            checked = quantize(model, data, runtime, out=path, input_shape=shape, tolerance=100.0, threads=threads, precision=precision)
            entry.update(dice_fp32=checked.dice_fp32, dice=checked.dice_quantized, agreement=checked.mask_agreement, executed=checked.executed_precision)
        deployed[column] = entry
    return deployed


def time_cells(cells: dict[str, dict], keys: list[str], log: Path, arguments) -> None:
    """Times every deployment of every finished cell in the same interleaved rounds, under the CPU lock."""
    keys = [key for key in keys if key in cells]
    timing_key = "timing:" + ",".join(keys)
    if timing_key in cells and not arguments.retime:
        return
    files = [(key, column, entry) for key in keys for column, entry in cells[key]["deployed"].items()]
    runners = [open_runner(entry["path"], arguments.threads, entry["runtime"], entry["precision"] if entry["runtime"] == "openvino" and entry["precision"] != "int8" else None) for _, _, entry in files]
    inputs = [random_input(runner.input_shape, 1, 256) for runner in runners]
    _progress(f"timing {len(files)} files x {arguments.rounds} rounds x {arguments.repeats} repeats; waiting for {CPU_LOCK}")
    medians: list[list[float]] = [[] for _ in files]
    with cpu_lock():
        load_before = os.getloadavg()
        for repeat in range(arguments.repeats):
            for index, times in enumerate(interleaved_timings(runners, inputs, arguments.rounds, warmup=5)):
                medians[index].append(float(np.median(times)))
            _progress(f"timing repeat {repeat + 1}/{arguments.repeats} done")
        load_after = os.getloadavg()
    timings = {
        f"{key}|{column}": {"median_ms": float(np.median(values)), "low_ms": min(values), "high_ms": max(values), "executed": runner.executed_precision}
        for (key, column, _), values, runner in zip(files, medians, runners)
    }
    append_cell(log, {
        "key": timing_key, "timings": timings, "threads": arguments.threads, "rounds": arguments.rounds, "repeats": arguments.repeats,
        "load_before": list(load_before), "load_after": list(load_after),
    })


@contextlib.contextmanager
def cpu_lock():
    with CPU_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def print_table(cells: dict[str, dict], arguments) -> None:
    rows = [row for key, row in cells.items() if not key.startswith("timing:")]
    timing_rows = [row for key, row in cells.items() if key.startswith("timing:")]
    timing = timing_rows[-1] if timing_rows else None
    dense = cells.get("dense")
    if dense is None:
        print("no dense cell yet")
        return
    dense_counts = np.asarray(dense["image_counts"])
    num_images = dense["evaluation"]["num_images"]
    height, width = dense["image_size"]
    print(f"\n{arguments.data}: {num_images} test images, 95% bootstrap intervals over them (1000 resamples); losses paired with dense on the same images.")
    if timing:
        print(
            f"Latency: 1x{height}x{width}, {timing['threads']} threads, median of {timing['repeats']} repeats' medians "
            f"({timing['rounds']} interleaved rounds each), spread min-max; load average {timing['load_before'][0]:.1f} before, "
            f"{timing['load_after'][0]:.1f} after. Speed-up (x) against dense on ORT fp32. Precision that executed in brackets where it differs from the column.\n"
        )
    columns = [column for column, *_ in DEPLOYMENTS]
    header = ["method", "budget", "distill", "epochs", "MACs ratio", "Dice [95%]", "loss vs dense, points [95% paired]", *columns, "bf16 / int8 Dice"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    base = timing["timings"].get("dense|ORT fp32", {}).get("median_ms") if timing else None
    for row in rows:
        evaluation = row["evaluation"]
        low, high = evaluation["dice_interval"]
        cells_text = [
            row["method"], "-" if row["budget"] is None else f"1/{round(1 / row['budget'])}", row["distill"] or "-",
            str(row.get("epochs_run", "-")), f"{row['macs'] / row['dense_macs']:.3f}", f"{evaluation['dice']:.3f} [{low:.3f}, {high:.3f}]",
        ]
        if row["key"] == "dense":
            cells_text.append("-")
        else:
            loss = paired_loss(dense_counts, np.asarray(row["image_counts"]))
            cells_text.append(f"{100 * loss.loss:.2f} [{100 * loss.low:.2f}, {100 * loss.high:.2f}]")
        for column in columns:
            entry = (timing or {"timings": {}})["timings"].get(f"{row['key']}|{column}")
            if entry is None:
                cells_text.append("-")
                continue
            named = "" if entry["executed"] == column.split()[1].replace("f32", "fp32") else f" [{entry['executed']}]"
            speed = f", {base / entry['median_ms']:.2f}x" if base else ""
            cells_text.append(f"{entry['median_ms']:.2f} ms ({entry['low_ms']:.2f}-{entry['high_ms']:.2f}){speed}{named}")
        deployed = row["deployed"]
        cells_text.append(f"{deployed['OV bf16']['dice']:.3f} / {deployed['OV int8']['dice']:.3f} (fp32 {deployed['OV int8']['dice_fp32']:.3f})")
        print("| " + " | ".join(cells_text) + " |")
    print_indistinguishable(rows)


def print_indistinguishable(rows: list[dict]) -> None:
    """Pairs of rows whose paired Dice difference interval holds 0: the test images cannot tell them apart."""
    pairs = []
    for first, second in itertools.combinations(rows, 2):
        loss = paired_loss(np.asarray(first["image_counts"]), np.asarray(second["image_counts"]))
        if loss.low <= 0.0 <= loss.high:
            pairs.append(f"{first['key']} ~ {second['key']} ({100 * loss.loss:+.2f} [{100 * loss.low:.2f}, {100 * loss.high:.2f}])")
    print(f"\nCannot be told apart (paired Dice difference interval holds 0), {len(pairs)} of {math.comb(len(rows), 2)} pairs:")
    for pair in pairs:
        print(f"- {pair}")


def _progress(message: str) -> None:
    print(f"[evidence {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
