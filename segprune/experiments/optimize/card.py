"""The model card `optimize` writes beside what it deploys: `model_card.json` (every figure) and `model_card.md`.

Every score carries its 95% interval and the number of test images; latencies and throughputs come from one timing
run of the deployed file side by side with dense on the same runtime and dense ONNX Runtime fp32; the commands
reproduce the result step by step, and the table says what was tried and why the ladder stopped.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from segprune import defaults
from segprune._io import write_text
from segprune.experiments.optimize.plan import LADDER, fraction
from segprune.runtime.benchmark import EXPORT_FORMATS, BenchmarkResult
from segprune.runtime.peak import detect_cpu
from segprune.sizes import format_size


@dataclass(frozen=True)
class CardInputs:
    """What the final step hands the card: the settings, every step's record, the choice and its final timings
    (`latency`: chosen, dense on the same runtime, dense ONNX Runtime fp32; `throughput`: chosen, dense)."""

    settings: object  # OptimizeSettings
    goal: object  # plan.Goal
    sources: dict
    dense: dict
    candidates: list
    step: dict
    deployment: dict
    file_name: str
    latency: list[BenchmarkResult]
    throughput: list[BenchmarkResult]
    stopped_by: str
    reason: str
    method_reason: str
    precisions: tuple
    shape: tuple
    retimed: dict = field(default_factory=dict)  # (budget, precision) -> the lower speed-up a final timing run measured


def model_card(inputs: CardInputs) -> dict:
    """The card as one JSON-ready dict."""
    settings, step, deployment = inputs.settings, inputs.step, inputs.deployment
    chosen, dense_same, reference = inputs.latency
    chosen_throughput, dense_throughput = inputs.throughput
    pruned = step["step"] == "candidate"
    speedup_reference = reference.latency_ms / chosen.latency_ms
    target_ms = inputs.goal.target_ms(reference.latency_ms)
    met = inputs.goal.met(speedup_reference, chosen.latency_ms)
    low, high = deployment["loss_interval"]
    why = (
        f"{_where(step)} in {deployment['precision']} is the fastest deployment whose paired loss interval against dense lies within "
        f"{settings.tolerance:g} Dice points; the ladder stopped because {inputs.reason}."
    )
    if not any(d["within"] for c in inputs.candidates for d in c["deployments"] if d["file"]):
        why += " No pruned candidate stayed within the tolerance, so the dense model is deployed."
    return {
        "model": inputs.sources["model"],
        "data": inputs.sources["data"],
        "runtime": settings.runtime,
        "goal": str(inputs.goal),
        "goal_ms": target_ms,
        "goal_met": met,
        "tolerance": settings.tolerance,
        "chosen": {
            "file": inputs.file_name,
            "keras_file": "model.keras",
            "pruned": pruned,
            "method": step.get("method"),
            "budget": step["budget"],
            "target": step.get("target"),
            "precision": deployment["precision"],
            "executed_precision": chosen.precision,
            "input_shape": list(inputs.shape),
        },
        "score": {
            "dice": deployment["dice"],
            "dice_interval": deployment["dice_interval"],
            "num_images": deployment["num_images"],
            "dense_dice": _fp32(inputs.dense)["dice"],
            "dense_dice_interval": _fp32(inputs.dense)["dice_interval"],
            "loss": deployment["loss"],
            "loss_interval": [low, high],
            "interval": "95% bootstrap over the test images; the loss is paired (the same resampled images for both)",
            "scored_as": "the deployed file on the test images, cut into tiles of its input shape",
        },
        "latency": {
            "ms": chosen.latency_ms,
            "p90_ms": chosen.p90_ms,
            "dense_same_runtime_ms": dense_same.latency_ms,
            "dense_onnxruntime_fp32_ms": reference.latency_ms,
            "speedup_vs_dense_same_runtime": dense_same.latency_ms / chosen.latency_ms,
            "speedup_vs_onnxruntime_fp32": speedup_reference,
            "threads": chosen.threads,
            "rounds": settings.rounds,
            "measured": "one interleaved timing run of the three files, batch 1",
        },
        "throughput": {
            "images_per_second": chosen_throughput.images_per_second,
            "dense_images_per_second": dense_throughput.images_per_second,
            "requests_in_flight": chosen_throughput.requests,
            "mode": "throughput (OpenVINO: THROUGHPUT hint, asynchronous requests; other runtimes: one request at a time)",
        },
        "macs": step["macs"],
        "params": step["params"],
        "dense_macs": inputs.dense["macs"],
        "dense_params": inputs.dense["params"],
        "macs_ratio": step["macs"] / inputs.dense["macs"],
        "gmacs_per_second": chosen.gmacs_per_second,
        "peak_share": chosen.peak_share,
        "cpu": _cpu(),
        "method_reason": inputs.method_reason,
        "why": why,
        "stopped_by": inputs.stopped_by,
        "stop_reason": inputs.reason,
        "tried": [_tried(record) for record in [inputs.dense, *inputs.candidates]],
        "timed_again": [
            {"step": "dense" if budget >= 1.0 else f"{settings.method} {fraction(budget)}", "budget": budget, "precision": precision, "speedup": speedup}
            for (budget, precision), speedup in inputs.retimed.items()
        ],
        "commands": _commands(inputs),
    }


def write_card(card: dict, out_dir: Path) -> None:
    write_text(out_dir / "model_card.json", json.dumps(card, indent=2) + "\n")
    write_text(out_dir / "model_card.md", markdown(card))


def summary_line(card: dict) -> str:
    score, latency = card["score"], card["latency"]
    low, high = score["loss_interval"]
    verdict = "goal met" if card["goal_met"] else "goal NOT met"
    return (
        f"deployed {card['chosen']['file']} ({card['chosen']['executed_precision']}): {latency['ms']:.2f} ms, "
        f"{latency['speedup_vs_onnxruntime_fp32']:.2f}x over dense ONNX Runtime fp32, {latency['speedup_vs_dense_same_runtime']:.2f}x over dense "
        f"{card['runtime']}; Dice {score['dice']:.4f} [{score['dice_interval'][0]:.4f}, {score['dice_interval'][1]:.4f}] on {score['num_images']} images, "
        f"loss {100 * score['loss']:.2f} points [{100 * low:.2f}, {100 * high:.2f}]; {verdict} ({card['goal']})"
    )


def markdown(card: dict) -> str:
    chosen, score, latency, throughput = card["chosen"], card["score"], card["latency"], card["throughput"]
    low, high = score["loss_interval"]
    rows = "\n".join(
        f"| {row['step']} | {row['precision']} | {_ms(row.get('latency_ms'))} | {_x(row.get('speedup'))} | {_dice(row)} | {_loss(row)} | {row['verdict']} |"
        for row in (dict(step=t["step"], **d) for t in card["tried"] for d in t["deployments"])
    )
    commands = "\n".join(card["commands"])
    share = "unknown" if card["peak_share"] is None else f"{100 * card['peak_share']:.1f}%"
    gmacs = "unknown" if card["gmacs_per_second"] is None else f"{card['gmacs_per_second']:.1f}"
    return f"""# Model card: {chosen['file']}

{card['why']}

- **Deployed**: `{chosen['file']}` on {card['runtime']}, {chosen['precision']} (runs as {chosen['executed_precision']}), input {'x'.join(str(v) for v in chosen['input_shape'])}; Keras model `{chosen['keras_file']}`
- **Score**: Dice {score['dice']:.4f} [{score['dice_interval'][0]:.4f}, {score['dice_interval'][1]:.4f}] on {score['num_images']} test images (dense {score['dense_dice']:.4f} [{score['dense_dice_interval'][0]:.4f}, {score['dense_dice_interval'][1]:.4f}]); loss {100 * score['loss']:.2f} Dice points [{100 * low:.2f}, {100 * high:.2f}] paired, tolerance {card['tolerance']:g}
- **Latency** ({latency['threads']} threads, batch 1, {latency['rounds']} interleaved rounds): {latency['ms']:.2f} ms (p90 {latency['p90_ms']:.2f}); dense on {card['runtime']} fp32 {latency['dense_same_runtime_ms']:.2f} ms, dense ONNX Runtime fp32 {latency['dense_onnxruntime_fp32_ms']:.2f} ms
- **Speed-up**: {latency['speedup_vs_onnxruntime_fp32']:.2f}x over dense ONNX Runtime fp32, {latency['speedup_vs_dense_same_runtime']:.2f}x over dense on {card['runtime']}; goal {card['goal']} ({card['goal_ms']:.2f} ms) {'met' if card['goal_met'] else 'NOT met'}
- **Throughput**: {throughput['images_per_second']:.1f} images/s ({throughput['requests_in_flight']} request(s) in flight), dense {throughput['dense_images_per_second']:.1f}
- **Compute**: {card['macs'] / 1e6:.1f} MMACs ({card['macs_ratio']:.3f} of dense {card['dense_macs'] / 1e6:.1f}), {card['params']:,} parameters (dense {card['dense_params']:,}); {gmacs} GMAC/s, {share} of this CPU's peak at the precision that ran
- **CPU**: {card['cpu']}
- **Method**: {card['method_reason']}

## What was tried

Speed-ups over dense ONNX Runtime fp32 from each step's own timing run; losses against the dense fp32 file, paired, 95% intervals.

| step | precision | latency | speed-up | Dice | loss (points) | verdict |
|---|---|---|---|---|---|---|
{rows}

{_timed_again(card)}Stopped: {card['stop_reason']} ({card['stopped_by']}).

## Reproduce

```bash
{commands}
```
"""


def _timed_again(card: dict) -> str:
    """A paragraph on files whose final timing run fell below the goal their step had met (empty when none)."""
    again = card.get("timed_again") or []
    if not again:
        return ""
    files = "; ".join(f"{entry['step']} {entry['precision']}: {entry['speedup']:.2f}x" for entry in again)
    return (f"Timed again in a final run, below the goal their step's run had met (the ladder went on from the lower figure): {files}.\n\n")


def _tried(record: dict) -> dict:
    step = "dense" if record["step"] == "dense" else f"{record['method']} {fraction(record['budget'])}"
    deployments = [] if "unreachable" not in record else [{"precision": "-", "verdict": f"not reached: {record['unreachable']}"}]
    for d in record["deployments"]:
        if d["file"] is None:
            deployments.append({"precision": d["precision"], "verdict": f"refused by quantize: {d['refused']}"})
            continue
        deployments.append({
            key: d[key] for key in ("precision", "executed_precision", "latency_ms", "speedup", "speedup_vs_dense_same_runtime", "dice",
                                    "dice_interval", "num_images", "loss", "loss_interval", "within")
        } | {"verdict": "within tolerance" if d["within"] else "beyond tolerance"})
    return {"step": step, "budget": record["budget"], "why": record.get("why", "the reference every candidate is compared with"),
            "macs": record["macs"], "params": record["params"], "seconds": record["seconds"], "deployments": deployments}


def _commands(inputs: CardInputs) -> list[str]:
    settings, step, deployment = inputs.settings, inputs.step, inputs.deployment
    model, data = inputs.sources["model"], inputs.sources["data"]
    options = ["--runtime", settings.runtime, "--target", str(inputs.goal), "--tolerance", f"{settings.tolerance:g}"]
    if settings.method != "l1":
        options += ["--method", settings.method]
    if settings.precisions is not None:
        options += ["--precision", ",".join(settings.precisions)]
    if tuple(settings.budgets) != LADDER:
        options += ["--budgets", ",".join(f"{budget:g}" for budget in settings.budgets)]
    options += ["--finetune-epochs", str(settings.finetune_epochs), "--image-size", format_size(settings.image_size), "--seed", str(settings.seed)]
    if settings.train.learning_rate != defaults.LEARNING_RATE:
        options += ["--learning-rate", f"{settings.train.learning_rate:g}"]
    if settings.distill is None:
        options.append("--no-distill")
    commands = ["# all of it again", shlex.join(["segprune", "optimize", model, "--data", data, *options, "--out", "DIR"])]
    keras_file = model
    if step["step"] == "candidate":
        keras_file = "model.keras"
        prune = ["segprune", "prune", model, "--method", step["method"], "--target", step["target"], "--data", data,
                 "--finetune-epochs", str(settings.finetune_epochs), "--image-size", format_size(settings.image_size), "--seed", str(settings.seed)]
        if settings.train.learning_rate != defaults.LEARNING_RATE:
            prune += ["--learning-rate", f"{settings.train.learning_rate:g}"]
        if step["target"].startswith("latency"):
            prune += ["--runtime", settings.runtime]
        if settings.distill is None:
            prune.append("--no-distill")
        commands += ["# step by step: prune and fine-tune", shlex.join([*prune, "--out", keras_file])]
    shape = "x".join(str(v) for v in inputs.shape)
    if deployment["precision"] == "fp32":
        commands += ["# export at the fixed shape, verified (optimize also records fp32 as an OpenVINO file's inference precision)",
                     shlex.join(["segprune", "export", keras_file, "--format", EXPORT_FORMATS[settings.runtime], "--input-shape", shape,
                                 "--out", inputs.file_name])]
    else:
        commands += [f"# {deployment['precision']}, checked on the test split",
                     shlex.join(["segprune", "quantize", keras_file, "--data", data, "--runtime", settings.runtime, "--precision", deployment["precision"],
                                 "--input-shape", shape, "--tolerance", f"{settings.tolerance:g}", "--out", inputs.file_name])]
    commands += ["# time it beside the dense model on ONNX Runtime fp32",
                 shlex.join(["segprune", "benchmark", model, inputs.file_name, "--runtime", "onnxruntime", "--threads", str(settings.threads)])]
    return commands


def _where(step: dict) -> str:
    return "The dense model" if step["step"] == "dense" else f"{step['method']} at {fraction(step['budget'])} of the dense {'latency' if step['target'].startswith('latency') else 'MACs'}"


def _fp32(record: dict) -> dict:
    return next(d for d in record["deployments"] if d["precision"] == "fp32")


def _cpu() -> str:
    try:
        return detect_cpu().describe()
    except ValueError:
        return "unknown"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _dice(row: dict) -> str:
    if row.get("dice") is None:
        return "-"
    low, high = row["dice_interval"]
    return f"{row['dice']:.4f} [{low:.4f}, {high:.4f}]"


def _loss(row: dict) -> str:
    if row.get("loss") is None:
        return "-"
    low, high = row["loss_interval"]
    return f"{100 * row['loss']:.2f} [{100 * low:.2f}, {100 * high:.2f}]"
