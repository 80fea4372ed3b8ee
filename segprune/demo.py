"""The main job on the built-in nuclei tiles: train a U-Net, prune it a few ways, fine-tune them properly, report.

Fewer methods, each fine-tuned long enough to be trusted (with distillation from the dense model), rather
than many methods fine-tuned for a token number of epochs: within ten minutes on two CPU cores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import keras

from segprune._io import write_text
from segprune.cost import flops
from segprune.data import load_data
from segprune.experiments import InstanceSweepConfig, SweepConfig, instance_data, missing_mask_rcnn_note, run_instance_sweep, run_sweep
from segprune.experiments.optimize import OptimizeSettings, optimize
from segprune.experiments.optimize.card import summary_line
from segprune.metrics import Evaluation, evaluate
from segprune.models import load_model, unet
from segprune.models.mask_rcnn import load_mask_rcnn
from segprune.report import build_report
from segprune.report.html import fine_tuning, row_notes
from segprune.report.instances import instance_markdown
from segprune.report.tables import balance_point
from segprune.training import DistillConfig, EpochReporter, TrainConfig, train
from segprune.training.checkpoint import state_path

DEMO_DATA = "nuclei"
DEMO_EPOCHS = 40
# One-shot L1 at half and a quarter of the MACs, fine-tuned with distillation from the dense model, and the two
# classical baselines that work on fluorescence nuclei. benchmarks/distill_nuclei.py measured (test Dice, dense
# 0.9488): L1 at 1/2 reaches 0.9387 after 10 epochs, 1/4 reaches 0.938, with or without distillation; 20 epochs
# buy margin over the 1-point tolerance. More methods: `segprune sweep --methods ...`.
DEMO_SWEEP = SweepConfig(
    methods=("oneshot-l1", "classical-otsu", "classical-watershed"),
    budgets=(0.5, 0.25),
    finetune_epochs=20,
    distill=DistillConfig(),
)
# Instance rows: classical watershed and U-Net + watershed from the demo's own U-Nets always (seconds); a trained
# Mask R-CNN given with --mask-rcnn adds its dense row and l1 at half the trunk MACs, fine-tuned (training one from
# scratch takes ~12 minutes on 2 cores, too long for the demo's default).
DEMO_INSTANCES = InstanceSweepConfig(criteria=("l1",), budgets=(0.5,), finetune_epochs=40)
MASK_RCNN_COMMAND = "segprune demo --mask-rcnn runs/mask_rcnn.keras"


@dataclass(frozen=True)
class DemoDeployment:
    """The deployment row: what `segprune optimize` makes of the demo's U-Net at the balance point's budget.

    The sweep's own pruned, fine-tuned model at that budget (or at the sweep's gentlest budget when no pruned network
    is within the tolerance) is handed to `optimize`, which deploys it and the dense model on `runtime` in every
    precision this CPU runs, scores each file with its interval, times them beside dense ONNX Runtime fp32 and
    writes the model card to `deploy/`; nothing is fine-tuned twice.
    """

    runtime: str = "openvino"
    target: str = "speedup=8"
    rounds: int = 30


DEMO_DEPLOYMENT = DemoDeployment()


@dataclass(frozen=True)
class DemoResult:
    model_path: Path
    metrics_path: Path
    report_path: Path
    evaluation: Evaluation
    balance: dict | None
    macs: int
    params: int
    rows: tuple[dict, ...] = ()
    instance_rows: tuple[dict, ...] = ()
    instance_notes: tuple[str, ...] = ()
    deployment: dict | None = None  # the model card of the deployment row (segprune optimize)


def run_demo(
    out_dir: str | Path,
    epochs: int = DEMO_EPOCHS,
    seed: int = 0,
    on_epoch: EpochReporter | None = None,
    sweep: SweepConfig = DEMO_SWEEP,
    progress=None,
    data_source: str | Path = DEMO_DATA,
    mask_rcnn: str | Path | None = None,
    instances: InstanceSweepConfig = DEMO_INSTANCES,
    deployment: DemoDeployment | None = DEMO_DEPLOYMENT,
) -> DemoResult:
    """Trains the default U-Net on the built-in nuclei tiles, prunes and fine-tunes it, writes metrics and the report.

    Writes `unet.keras`, `metrics.json`, `summary.md` (the report's table as text), the sweep's
    `results.csv`/`results.json` and `report.html` into `out_dir`. A second run resumes: a finished training
    and finished sweep candidates are reused, and an interrupted training continues from its last epoch.
    When the data have `instances/` (the nuclei do), instance rows follow (`sweep/instance_results.*`):
    classical watershed and U-Net + watershed for every U-Net of the sweep, and, given a trained `mask_rcnn`
    file, that Mask R-CNN dense and pruned as `instances` says; the report says which rows were not run. With
    `deployment`, the deployment row that `segprune optimize` produces (`deploy/model_card.md`) ends the report.

    Example:
        >>> result = run_demo("runs/demo")
        >>> result.report_path.name
        'report.html'
    """
    out_dir = Path(out_dir)
    detector = load_mask_rcnn(mask_rcnn) if mask_rcnn is not None else None  # a wrong file fails now, not after training
    keras.utils.set_random_seed(seed)
    data = load_data(data_source)
    model_path = out_dir / "unet.keras"
    if model_path.exists() and not state_path(model_path).exists():
        model, best_epoch, train_seconds = load_model(model_path), None, None  # trained by an earlier run
    else:
        model = unet(num_classes=data.num_classes, input_channels=data.image_channels)
        training = train(model, data, epochs, TrainConfig(), checkpoint_path=model_path, on_epoch=on_epoch, resume=True)
        if training.interrupted:
            raise KeyboardInterrupt
        best_epoch, train_seconds = training.best_epoch, training.seconds
    evaluation = evaluate(model, data, "test")
    cost = flops(model, (128, 128))
    rows = run_sweep(model, data, out_dir / "sweep", sweep, progress)
    for row in rows:
        if row["method"] == "dense" and not row.get("notes") and best_epoch is not None:
            row["notes"] = [f"trained {len(training.history)} epochs ({train_seconds:.0f} s); best at epoch {best_epoch}"]
    instance_rows, instance_notes = _instance_rows(data_source, data, rows, detector, instances, out_dir / "sweep", progress)
    card = None
    if deployment is not None:
        card = _deploy(model, model_path, data, data_source, rows, sweep, deployment, seed, out_dir / "deploy", progress)
    title = f"segprune demo: U-Net on the {data.name} data"
    report_path, balance = build_report(rows, data, out_dir, sweep.tolerance, title, instance_rows, instance_notes, card)
    summary = summary_table(rows) + ("\n\n" + instance_markdown(instance_rows) if instance_rows else "")
    write_text(out_dir / "summary.md", summary + "".join(f"\n\n{note}" for note in instance_notes) + "\n")
    metrics = {
        "data": data.name,
        "model": str(model_path),
        "test": evaluation.to_dict(),
        "macs_128x128": cost.macs,
        "params": cost.params,
        "best_epoch": best_epoch,
        "train_seconds": train_seconds,
        "balance_point": balance,
        "instances": [{key: row[key] for key in _INSTANCE_FIGURES} for row in instance_rows],
        "instance_notes": instance_notes,
        "deployment": None if card is None else {key: card[key] for key in ("runtime", "chosen", "score", "latency", "throughput", "goal", "goal_met")},
        "report": str(report_path),
    }
    metrics_path = out_dir / "metrics.json"
    write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    return DemoResult(
        model_path, metrics_path, report_path, evaluation, balance, cost.macs, cost.params, tuple(rows), tuple(instance_rows), tuple(instance_notes),
        card,
    )


_OPTIMIZE_METHODS = {"oneshot-l1": "l1", "greedy": "greedy", "random-search": "random-search"}  # sweep method -> optimize's


def _deploy(model, model_path: Path, data, data_source, rows: list[dict], sweep: SweepConfig, deployment: DemoDeployment, seed: int,
            folder: Path, progress) -> dict | None:
    """The model card of `optimize` run on the sweep's pruned model at the balance point's budget (see DemoDeployment);
    None when the sweep pruned nothing `optimize` deploys."""
    pruned = [row for row in rows if row.get("model_path") and row["method"] in _OPTIMIZE_METHODS and row.get("budget")]
    if not pruned:
        return None
    balance = balance_point(rows, sweep.tolerance)
    chosen = balance if balance in pruned else max(pruned, key=lambda row: row["budget"])
    settings = OptimizeSettings(
        deployment.runtime, target=deployment.target, tolerance=sweep.tolerance, method=_OPTIMIZE_METHODS[chosen["method"]],
        budgets=(chosen["budget"],), finetune_epochs=sweep.finetune_epochs, distill=sweep.distill, train=replace(sweep.train, patience=None),
        rounds=deployment.rounds, seed=seed,
    )
    say = progress or (lambda line: None)
    say(f"deploying {chosen['method']} at {chosen['budget']:g} with segprune optimize on {deployment.runtime} (model card in {folder})")
    result = optimize(model, data, folder, settings, resume=folder.exists(), say=say, sources={"model": str(model_path), "data": str(data_source)},
                      pruned={chosen["budget"]: load_model(chosen["model_path"])})
    say(summary_line(result.card))
    return result.card


_INSTANCE_FIGURES = ("method", "budget", "ap", "ap50", "ap75", "dsb", "union_dice", "macs_ratio", "latency_ms", "python_ms_per_image")


def _instance_rows(data_source, data, rows, detector, config: InstanceSweepConfig, sweep_dir: Path, progress) -> tuple[list[dict], list[str]]:
    """The instance rows when the data have instances (else none, and a note saying so), and the notes on rows not run."""
    instances = instance_data(data_source, data.ids("test"))
    if instances is None:
        return [], [f"No instance rows: {data.name!r} has no instances/ folder (one 16-bit label image per image)."]
    instance_rows = run_instance_sweep(instances, sweep_dir, rows, detector, config, progress)
    return instance_rows, [] if detector is not None else [missing_mask_rcnn_note(MASK_RCNN_COMMAND)]


def summary_table(rows: list[dict]) -> str:
    """The report's table as markdown, for the terminal and notes.

    Example:
        >>> print(summary_table(result.rows))
    """
    dense_dice = next((row["dice"] for row in rows if row["method"] == "dense"), None)
    lines = [
        "| method | MACs budget | Dice [95%] | Dice lost, points [95% paired] | MACs | ONNX ms | speed-up | fine-tuning | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        tuning = fine_tuning(row)
        cells = [
            row["method"],
            "-" if row.get("budget") is None else f"{row['budget']:g}",
            f"{row['dice']:.4f}" + ("" if not row.get("dice_interval") or None in row["dice_interval"] else " [{:.4f}, {:.4f}]".format(*row["dice_interval"])),
            _loss_cell(row),
            "-" if row.get("macs_ratio") is None else f"{row['macs_ratio']:.3f}",
            "-" if row.get("latency_ms") is None else f"{row['latency_ms']:.2f}",
            "-" if row.get("speedup") is None else f"{row['speedup']:.2f}x",
            tuning,
            "; ".join(row_notes(row, dense_dice)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _loss_cell(row: dict) -> str:
    """Dense Dice minus the row's, in points, with its paired 95% interval over the same test images."""
    interval = row.get("dice_loss_interval")
    if row.get("dice_loss") is None or not interval or None in interval:
        return "-"
    return f"{100 * row['dice_loss']:.2f} [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"
