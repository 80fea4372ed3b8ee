"""The main job on the built-in data: train a U-Net on the synthetic dataset and score it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from segprune._io import write_text
from segprune.cost import flops
from segprune.data import synthetic_dataset
from segprune.metrics import Evaluation, evaluate
from segprune.models import unet
from segprune.training import EpochReporter, TrainConfig, TrainResult, train

DEMO_EPOCHS = 25


@dataclass(frozen=True)
class DemoResult:
    model_path: Path
    metrics_path: Path
    evaluation: Evaluation
    training: TrainResult
    macs: int
    params: int


def run_demo(out_dir: str | Path, epochs: int = DEMO_EPOCHS, seed: int = 0, on_epoch: EpochReporter | None = None) -> DemoResult:
    """Trains the default U-Net on the synthetic data, evaluates it on the test split, writes both.

    Writes `unet.keras` and `metrics.json` into `out_dir`.

    Example:
        >>> result = run_demo("runs/demo", epochs=2)
        >>> result.model_path.name
        'unet.keras'
    """
    out_dir = Path(out_dir)
    data = synthetic_dataset(seed=seed)
    model = unet(num_classes=data.num_classes, input_channels=data.image_channels)
    model_path = out_dir / "unet.keras"
    training = train(model, data, epochs=epochs, config=TrainConfig(), checkpoint_path=model_path, on_epoch=on_epoch)
    evaluation = evaluate(model, data, "test")
    cost = flops(model, (128, 128))
    metrics = {
        "data": data.name,
        "model": str(model_path),
        "test": evaluation.to_dict(),
        "macs_128x128": cost.macs,
        "params": cost.params,
        "best_epoch": training.best_epoch,
        "train_seconds": training.seconds,
    }
    metrics_path = out_dir / "metrics.json"
    write_text(metrics_path, json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    return DemoResult(model_path, metrics_path, evaluation, training, cost.macs, cost.params)
