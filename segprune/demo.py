"""The main job on the built-in data: train a U-Net, sweep pruning methods and budgets, write the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras

from segprune._io import write_text
from segprune.cost import flops
from segprune.data import synthetic_dataset
from segprune.experiments import SWEEP_METHODS, SweepConfig, run_sweep
from segprune.metrics import Evaluation, evaluate
from segprune.models import load_model, unet
from segprune.report import build_report
from segprune.training import EpochReporter, TrainConfig, train
from segprune.training_state import state_path

DEMO_EPOCHS = 15
# Every method that has landed, at two budgets, sized to finish in well under 10 minutes on 2 cores.
# Four one-shot criteria, a small random search and every classical baseline: the story within the demo's
# ten minutes (slimming, L0 channel gates and greedy search too: `segprune sweep --methods ...`).
DEMO_SWEEP = SweepConfig(
    methods=(
        "oneshot-l1", "oneshot-taylor", "oneshot-random", "oneshot-mutual-info", "random-search",
        *(m for m in SWEEP_METHODS if m.startswith("classical-")),
    ),
    budgets=(0.5, 0.25),
    finetune_epochs=3,
    search_candidates=4,
)


@dataclass(frozen=True)
class DemoResult:
    model_path: Path
    metrics_path: Path
    report_path: Path
    evaluation: Evaluation
    balance: dict | None
    macs: int
    params: int


def run_demo(
    out_dir: str | Path,
    epochs: int = DEMO_EPOCHS,
    seed: int = 0,
    on_epoch: EpochReporter | None = None,
    sweep: SweepConfig = DEMO_SWEEP,
    progress=None,
) -> DemoResult:
    """Trains the default U-Net on the synthetic data, sweeps pruning methods, writes metrics and the report.

    Writes `unet.keras`, `metrics.json`, the sweep's `results.csv`/`results.json` and `report.html` into
    `out_dir`. A second run resumes: a finished training and finished sweep candidates are reused, and an
    interrupted training continues from its last epoch.

    Example:
        >>> result = run_demo("runs/demo")
        >>> result.report_path.name
        'report.html'
    """
    out_dir = Path(out_dir)
    keras.utils.set_random_seed(seed)
    data = synthetic_dataset(seed=seed)
    model_path = out_dir / "unet.keras"
    if model_path.exists() and not state_path(model_path).exists():
        model, best_epoch, train_seconds = load_model(model_path), None, 0.0  # trained by an earlier run
    else:
        model = unet(num_classes=data.num_classes, input_channels=data.image_channels)
        training = train(model, data, epochs, TrainConfig(), checkpoint_path=model_path, on_epoch=on_epoch, resume=True)
        if training.interrupted:
            raise KeyboardInterrupt
        best_epoch, train_seconds = training.best_epoch, training.seconds
    evaluation = evaluate(model, data, "test")
    cost = flops(model, (128, 128))
    rows = run_sweep(model, data, out_dir / "sweep", sweep, progress)
    report_path, balance = build_report(rows, data, out_dir, sweep.tolerance, "segprune demo: U-Net on the synthetic data")
    metrics = {
        "data": data.name,
        "model": str(model_path),
        "test": evaluation.to_dict(),
        "macs_128x128": cost.macs,
        "params": cost.params,
        "best_epoch": best_epoch,
        "train_seconds": train_seconds,
        "balance_point": balance,
        "report": str(report_path),
    }
    metrics_path = out_dir / "metrics.json"
    write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    return DemoResult(model_path, metrics_path, report_path, evaluation, balance, cost.macs, cost.params)
