"""`optimize`: from a trained model to a deployable, timed file with a model card, step by step, resumable.

Steps, each appended to `DIR/optimize.jsonl` when it finishes (its files under `DIR/steps/`):
1. `start`: what the run is (model, data, settings), so that `resume` refuses another run's folder.
2. `dense`: the dense model exported for the target runtime at every precision tried (and as ONNX fp32, the
   reference), each file scored on the test split and all timed side by side.
3. `candidate`, one per rung of the ladder (`plan.next_step`): pruned to a budget, fine-tuned (distilled),
   deployed and scored the same way, timed beside the dense files. A deployment counts when the upper end of
   its paired 95% loss interval against the dense fp32 file is within `tolerance` Dice points.
4. `final`: the fastest deployment within the tolerance over every step (the dense fp32 file always is, so
   something is always deployed: when no pruned candidate qualifies, the card says so and ships dense), copied
   to `DIR/`, timed once more side by side with dense on the same runtime and dense ONNX Runtime fp32 (latency,
   then throughput), and the model card written.

A resumed run replays the finished steps from the log and continues the unfinished one (a fine-tune resumes from
its last epoch), so it makes the same choices. `max_minutes` stops before a new candidate once the finished steps
have taken that long; the final step then chooses among them and says so (`resume` with more minutes continues).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

from segprune import defaults
from segprune._io import save_model
from segprune._jsonlines import JsonLines
from segprune.api import SEARCH_METHODS, prune
from segprune.cost import flops
from segprune.cost.resources import BudgetUnreachable
from segprune.data.dataset import SegmentationDataset
from segprune.experiments.optimize import card as cards
from segprune.experiments.optimize import deploy
from segprune.experiments.optimize.plan import (
    DEFAULT_GOAL,
    DEFAULT_METHOD,
    LADDER,
    Outcome,
    check_ladder,
    check_method,
    fraction,
    next_step,
    open_rungs,
    parse_goal,
)
from segprune.inference import input_channels, measurement_size
from segprune.intervals import paired_loss
from segprune.metrics import check_fits_data
from segprune.models import load_model
from segprune.progress_lines import LineReporters, minutes
from segprune.runtime.latency import RUNTIMES as LATENCY_TABLE_RUNTIMES
from segprune.training import DistillConfig, TrainConfig
from segprune.training.run_state import data_fingerprint, jsonable, model_fingerprint, run_folder

LOG_NAME = "optimize.jsonl"
Say = Callable[[str], None]


@dataclass(frozen=True)
class OptimizeSettings:
    """How `optimize` runs.

    Attributes:
        runtime: Where the model ships: `"onnxruntime"`, `"openvino"` or `"litert"`.
        target: `"speedup=S"` (S times faster than dense on ONNX Runtime fp32) or `"latency=MS"` (on `runtime`).
        tolerance: Dice points the deployed model may lose against dense, judged by the upper end of the paired
            95% interval of the loss.
        method: `"l1"` (one-shot, the default), `"greedy"` or `"random-search"` (searched on `runtime`'s latency
            table where it has one, else to MACs).
        budgets: The ladder of budgets (fractions of the dense MACs, or of its latency for a search).
        precisions: Precisions to deploy (`"fp32"`, `"int8"`, `"bf16"`); None: every one `runtime` runs here.
        finetune_epochs: Fine-tuning of every candidate.
        distill: Fine-tune with distillation from the dense model (None: ground truth only).
        train: How candidates fine-tune.
        image_size: The fixed input size files are exported and timed at, N or (height, width) (default: the model's, else 256x256).
        threads: Runtime threads for scoring and timing.
        rounds: Timed rounds per timing run (after 5 warm-up rounds).
        max_minutes: Stop before a new candidate once the finished steps took this long (None: no limit).
        seed: Seeds pruning and fine-tuning.
    """

    runtime: str
    target: str = DEFAULT_GOAL
    tolerance: float = defaults.TOLERANCE
    method: str = DEFAULT_METHOD
    budgets: tuple[float, ...] = LADDER
    precisions: tuple[str, ...] | None = None
    finetune_epochs: int = defaults.OPTIMIZE_FINETUNE_EPOCHS
    distill: DistillConfig | None = field(default_factory=lambda: DistillConfig() if defaults.DISTILL else None)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(patience=None))
    image_size: int | tuple[int, int] | None = None
    threads: int = defaults.THREADS
    rounds: int = 30
    max_minutes: float | None = None
    seed: int = defaults.SEED

    def __post_init__(self) -> None:
        deploy.check_runtime(self.runtime)
        parse_goal(self.target)
        check_method(self.method)
        check_ladder(self.budgets)
        deploy.available_precisions(self.runtime, self.precisions)
        if self.tolerance < 0:
            raise ValueError(f"tolerance is in Dice points the deployed model may lose and cannot be negative; got {self.tolerance}.")
        if self.finetune_epochs < 0 or self.rounds < 1 or self.threads < 1:
            raise ValueError(f"finetune_epochs must be >= 0, rounds and threads >= 1; got {self.finetune_epochs}, {self.rounds}, {self.threads}.")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}.")


@dataclass(frozen=True)
class OptimizeResult:
    """The model card (`card`, as written to `model_card.json`) and where the run wrote it."""

    card: dict
    out_dir: Path

    @property
    def deployed(self) -> Path:
        return self.out_dir / self.card["chosen"]["file"]


def optimize(
    model: keras.Model,
    data: SegmentationDataset,
    out_dir: str | Path,
    settings: OptimizeSettings,
    resume: bool = False,
    say: Say | None = None,
    sources: dict | None = None,
    pruned: Mapping[float, keras.Model] | None = None,
) -> OptimizeResult:
    """Prunes, fine-tunes, quantizes and times `model` for `settings.runtime`; keeps the fastest deployment whose loss
    stays within the tolerance and writes it to `out_dir` with `model.keras`, `model_card.md` and `model_card.json`.

    Args:
        model: The trained dense model (never modified).
        data: Its dataset: candidates fine-tune on its train split and are scored on its test split.
        out_dir: A folder that must not exist yet (the run creates it), unless `resume`.
        settings: What to aim at and how (`OptimizeSettings`).
        resume: Continue the run that wrote `out_dir`, replaying its finished steps; refused if it was another run.
        say: Where progress lines go (None: nowhere).
        sources: How the model and data were given (`{"model": "unet.keras", "data": "nuclei"}`), for the card's
            commands; placeholders when None.
        pruned: Models already pruned to some budgets of the ladder by `settings.method` and fine-tuned as `settings`
            says (a sweep's, which the demo hands over), deployed as they are rather than pruned and fine-tuned again.

    Example:
        >>> result = optimize(model, load_data("nuclei"), "runs/deploy", OptimizeSettings("openvino", target="speedup=8"))
        >>> result.card["latency"]["speedup_vs_onnxruntime_fp32"] >= 8
        True
    """
    out_dir = Path(out_dir)
    say = say or (lambda line: None)
    check_fits_data(model, data)
    for split in ("train", "test"):  # before any work (a missing or empty split is a DataError): candidates train and calibrate on
        data.ids(split)  # the train split and are scored on the test split
    settings = replace(settings, image_size=measurement_size(model, settings.image_size))
    pruned = dict(pruned or {})
    unknown = [budget for budget in pruned if budget not in settings.budgets]
    if unknown:
        raise ValueError(f"pruned models were given for budgets {unknown} that are not on the ladder {list(settings.budgets)}.")
    log = _open_log(out_dir, resume)
    run = _Run(model, data, out_dir, settings, log, say, sources or {"model": "MODEL", "data": "DATA"}, pruned)
    return run.go()


def check_out_dir(out_dir: str | Path, resume: bool) -> None:
    """Refuses an existing folder without `resume` (optimize never writes into a user's folder), and with it a folder
    that holds no optimize run; a missing folder with `resume` starts afresh."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not resume:
        raise ValueError(f"--out {str(out_dir)!r} exists; optimize writes a new folder and never writes into yours: choose another --out, "
                         "or add --resume to continue the optimize run that folder holds.")
    if resume and out_dir.exists() and not JsonLines(out_dir / LOG_NAME).exists():
        raise ValueError(f"{str(out_dir)!r} holds no optimize run ({LOG_NAME} is missing), so there is nothing to resume; choose another --out.")


def _open_log(out_dir: Path, resume: bool) -> JsonLines:
    check_out_dir(out_dir, resume)
    log = JsonLines(out_dir / LOG_NAME)
    log.repair()  # a record torn by a kill is cut off
    return log


class _Run:
    """One optimize run: its steps, replayed from the log or run now."""

    def __init__(self, model, data, out_dir: Path, settings: OptimizeSettings, log: JsonLines, say: Say, sources: dict, pruned: dict) -> None:
        self.model, self.data, self.out_dir, self.settings, self.log, self.say, self.sources = model, data, out_dir, settings, log, say, sources
        self.given = pruned
        self.goal = parse_goal(settings.target)
        self.precisions = deploy.available_precisions(settings.runtime, settings.precisions)
        self.shape = (1, *settings.image_size, input_channels(model))  # what every file is exported at
        self.records = log.read()

    # ------------------------------------------------------------------------------------------ the steps
    def go(self) -> OptimizeResult:
        identity = self._identity()
        start = self._replayed("start")
        if start is None:
            self._append({"step": "start", "identity": identity, "precisions": list(self.precisions), "method_reason": check_method(self.settings.method)})
        else:
            _check_identity(start["identity"], identity, self.log.path)
        dense = self._replayed("dense") or self._dense()
        candidates = [record for record in self.records if record["step"] == "candidate"]
        while True:
            stopped_by, reason = self._walk(dense, candidates)
            final = self._final(dense, candidates, stopped_by, reason)
            if stopped_by != "plan" or not self._missed_when_timed_again(dense, candidates, final):
                return OptimizeResult(final["card"], self.out_dir)

    def _walk(self, dense: dict, candidates: list[dict]) -> tuple[str, str]:
        """Candidates down the ladder (appended to `candidates`) until the plan or --max-minutes stops it: (by what, why)."""
        while True:
            step = next_step(self.settings.budgets, [_outcome(record, self.goal, self._retimed()) for record in [dense, *candidates]],
                             self._needed(dense))
            if step.budget is None:
                return "plan", step.reason
            if self.settings.max_minutes is not None and self._spent() >= 60 * self.settings.max_minutes:
                reason = f"--max-minutes {self.settings.max_minutes:g} reached after {minutes(self._spent())}; next would have been {fraction(step.budget)}"
                self.say(f"stopping: {reason}; choosing among the {len(candidates) + 1} finished steps")
                return "max-minutes", reason
            candidates.append(self._candidate(step.budget, step.reason, dense, len(candidates) + 1))

    def _missed_when_timed_again(self, dense: dict, candidates: list[dict], final: dict) -> bool:
        """Whether the chosen file met the goal in its step's timing run but not in the final one (a machine busier during
        one run than the other moves even a ratio): the lower speed-up is logged as the file's own, so the ladder
        goes on from there (once per file: a file timed again is judged on the lower of its timings)."""
        card = final["card"]
        budget, precision = final["chosen_key"]
        step = next(record for record in [dense, *candidates] if record["budget"] == budget)
        deployment = next(d for d in step["deployments"] if d["precision"] == precision)
        speedup = _speedup(deployment, budget, self._retimed())
        timed_again = card["latency"]["speedup_vs_onnxruntime_fp32"]
        if card["goal_met"] or not self.goal.met(speedup, deployment["latency_ms"]):
            return False
        self._append({"step": "retime", "budget": budget, "precision": precision, "speedup": timed_again, "latency_ms": card["latency"]["ms"]})
        self.say(f"  {_describe(step, deployment)} met the goal at {speedup:.2f}x in its step but not when timed again ({timed_again:.2f}x): "
                 "going on with the lower figure")
        return True

    def _retimed(self) -> dict:
        """(budget, precision) -> the speed-up a final timing run measured, for files it put below the goal."""
        return {(record["budget"], record["precision"]): record["speedup"] for record in self.records if record["step"] == "retime"}

    def _dense(self) -> dict:
        started = time.perf_counter()
        folder = self.out_dir / "steps" / "dense"
        folder.mkdir(parents=True, exist_ok=True)
        self.say(f"step 1: dense model on {self.settings.runtime} at {', '.join(self.precisions)} and on ONNX Runtime fp32 (the reference), "
                 f"input {'x'.join(map(str, self.shape))}")
        written = deploy.write_files(self.model, self.data, self.settings.runtime, folder, self.shape, self.precisions, self.settings.tolerance,
                                     self.settings.threads)
        reference = deploy.write_reference(self.model, folder, self.shape, self.settings.runtime)
        dense_fp32 = next(item["file"] for item in written if item["precision"] == "fp32")
        reference_scores = deploy.score_file(dense_fp32, self.model, self.data, self.settings.threads)
        deployments = self._measure(self.model, written, reference_scores.image_counts, [reference, dense_fp32])
        report = flops(self.model, self.settings.image_size)
        record = {
            "step": "dense", "budget": 1.0, "deployments": deployments, "macs": report.macs, "params": self.model.count_params(),
            "reference_file": self._relative(reference), "image_counts": reference_scores.image_counts.tolist(),
            "seconds": time.perf_counter() - started,
        }
        self._append(record)
        self._report(record, None)
        return record

    def _candidate(self, budget: float, why: str, dense: dict, number: int) -> dict:
        started = time.perf_counter()
        folder = self.out_dir / "steps" / f"budget-{budget:g}"
        resource = self._resource()
        self.say(f"step {number + 1}: {self.settings.method} to {fraction(budget)} of the dense {_RESOURCE_NAMES[resource]} ({why})")
        try:
            pruned = self._pruned(budget, resource, folder, number + 1)
        except BudgetUnreachable as error:
            record = {"step": "candidate", "budget": budget, "why": why, "method": self.settings.method, "target": f"{resource}={budget:g}",
                      "deployments": [], "unreachable": str(error), "reachable": error.reachable, "macs": None, "params": None,
                      "seconds": time.perf_counter() - started}
            self._append(record)
            self.say(f"  {fraction(budget)} cannot be reached: {error}")
            return record
        written = deploy.write_files(pruned, self.data, self.settings.runtime, folder, self.shape, self.precisions, self.settings.tolerance,
                                     self.settings.threads)
        reference = self.out_dir / dense["reference_file"]
        dense_fp32 = self.out_dir / _fp32(dense)["file"]
        deployments = self._measure(pruned, written, np.asarray(dense["image_counts"]), [reference, dense_fp32])
        record = {
            "step": "candidate", "budget": budget, "why": why, "method": self.settings.method, "target": f"{resource}={budget:g}",
            "deployments": deployments, "macs": flops(pruned, self.settings.image_size).macs, "params": pruned.count_params(),
            "model_file": self._relative(folder / "model.keras"), "seconds": time.perf_counter() - started,
        }
        self._append(record)
        self._report(record, dense)
        return record

    def _pruned(self, budget: float, resource: str, folder: Path, number: int) -> keras.Model:
        """The candidate's fine-tuned model: read back when a killed run finished it, else pruned now (its fine-tune resumed)."""
        path = folder / "model.keras"
        if path.exists() and not run_folder(path).exists():
            return load_model(path)
        folder.mkdir(parents=True, exist_ok=True)
        if budget in self.given:
            self.say(f"  step {number}: the model given for {fraction(budget)}, already pruned and fine-tuned")
            save_model(self.given[budget], path)
            return load_model(path)
        settings = self.settings
        lines = LineReporters(self.say, prefix=f"  step {number}: ")
        options = {}
        if settings.method in SEARCH_METHODS:
            options = dict(folder=folder / "search", time_result=False, threads=settings.threads, on_candidate=lines.candidate, on_search_start=lines.plan)
            if resource == "latency":
                options["runtime"] = settings.runtime
        prune(
            self.model, settings.method, target=f"{resource}={budget:g}", data=self.data, finetune_epochs=settings.finetune_epochs,
            image_size=settings.image_size, seed=settings.seed, train_config=settings.train, distill=settings.distill, checkpoint_path=path,
            resume=True, progress=False, on_epoch=lines.epoch, **options,
        )
        return load_model(path)

    def _measure(self, model: keras.Model, written: list[dict], dense_counts: np.ndarray, dense_files: list[Path | str]) -> list[dict]:
        """Every written file scored on the test split and timed beside the dense reference and dense fp32 files."""
        files = [item for item in written if item["file"] is not None]
        timed_paths = list(dict.fromkeys([str(path) for path in dense_files] + [item["file"] for item in files]))
        timings = {result.model: result for result in deploy.time_files(timed_paths, self.settings.runtime, self.settings.threads, self.settings.rounds)}
        reference, dense_fp32 = (timings[str(path)] for path in dense_files)
        deployments = []
        for item in written:
            entry = {"precision": item["precision"], "file": None, "refused": item["refused"]}
            if item["file"] is not None:
                scores = deploy.score_file(item["file"], model, self.data, self.settings.threads)
                loss = paired_loss(dense_counts, scores.image_counts)
                timing = timings[item["file"]]
                entry.update(
                    file=self._relative(Path(item["file"])), executed_precision=timing.precision, latency_ms=timing.latency_ms, p90_ms=timing.p90_ms,
                    dense_ms=dense_fp32.latency_ms, reference_ms=reference.latency_ms, speedup=reference.latency_ms / timing.latency_ms,
                    speedup_vs_dense_same_runtime=dense_fp32.latency_ms / timing.latency_ms, dice=scores.dice,
                    dice_interval=scores.dice_interval.to_list(), num_images=scores.num_images, loss=loss.loss, loss_interval=[loss.low, loss.high],
                    within=loss.within(self.settings.tolerance),
                )
            deployments.append(entry)
        return deployments

    def _final(self, dense: dict, candidates: list[dict], stopped_by: str, reason: str) -> dict:
        done = self.records[-1] if self.records and self.records[-1]["step"] == "final" else None  # a final before later steps is stale
        if done is not None and done["stopped_by"] == stopped_by and done["chosen_key"] == _key(_choose(dense, candidates, self._retimed())):
            self.say(f"finished earlier: {self.out_dir / 'model_card.md'}")
            return done
        step, deployment = _choose(dense, candidates, self._retimed())
        self.say(f"final: {_describe(step, deployment)} is the fastest within {self.settings.tolerance:g} Dice points; timing it beside dense")
        chosen_name = deploy.file_name(self.settings.runtime, deployment["precision"])
        source = self.out_dir / deployment["file"]
        for part, target in zip(_parts(source), _parts(self.out_dir / chosen_name)):
            shutil.copyfile(part, target.with_name(f".{target.name}.tmp"))
        for target in _parts(self.out_dir / chosen_name):  # the .xml last: never an .xml without its .bin
            target.with_name(f".{target.name}.tmp").replace(target)
        keras_model = self.model if step["step"] == "dense" else load_model(self.out_dir / step["model_file"])
        save_model(keras_model, self.out_dir / "model.keras")
        paths = [self.out_dir / chosen_name, self.out_dir / _fp32(dense)["file"], self.out_dir / dense["reference_file"]]
        unique = list(dict.fromkeys(str(path) for path in paths))
        latency = {r.model: r for r in deploy.time_files(unique, self.settings.runtime, self.settings.threads, self.settings.rounds)}
        throughput = {r.model: r for r in deploy.time_files(unique[:2], self.settings.runtime, self.settings.threads, self.settings.rounds, "throughput")}
        card = cards.model_card(
            cards.CardInputs(
                settings=self.settings, goal=self.goal, sources=self.sources, dense=dense, candidates=candidates, step=step, deployment=deployment,
                file_name=chosen_name, latency=[latency[p] for p in (str(paths[0]), str(paths[1]), str(paths[2]))],
                throughput=[throughput[p] for p in (str(paths[0]), str(paths[1]))], stopped_by=stopped_by, reason=reason, retimed=self._retimed(),
                method_reason=check_method(self.settings.method), precisions=self.precisions, shape=self.shape,
            )
        )
        cards.write_card(card, self.out_dir)
        record = {"step": "final", "stopped_by": stopped_by, "chosen_key": _key((step, deployment)), "card": card}
        self._append(record)
        self.say(cards.summary_line(card))
        return record

    # ------------------------------------------------------------------------------------------ helpers
    def _identity(self) -> dict:
        settings = {key: value for key, value in asdict(self.settings).items() if key not in ("max_minutes",)}
        identity = {"model": model_fingerprint(self.model), "data": data_fingerprint(self.data), "settings": jsonable(settings)}
        if self.given:
            identity["pruned"] = {f"{budget:g}": model_fingerprint(model) for budget, model in sorted(self.given.items())}
        return identity

    def _replayed(self, step: str) -> dict | None:
        """The last logged record of `step` (a run resumed after --max-minutes may log a second final)."""
        return next((record for record in reversed(self.records) if record["step"] == step), None)

    def _append(self, record: dict) -> None:
        self.log.append(record)
        self.records.append(record)

    def _needed(self, dense: dict) -> float:
        """The speed-up over dense ONNX Runtime fp32 that meets the goal (a latency goal: at the dense step's timing)."""
        reference_ms = _fp32(dense)["reference_ms"]
        return reference_ms / self.goal.target_ms(reference_ms)

    def _spent(self) -> float:
        return sum(record.get("seconds", 0.0) for record in self.records)

    def _resource(self) -> str:
        if self.settings.method in SEARCH_METHODS and self.settings.runtime in LATENCY_TABLE_RUNTIMES:
            return "latency"
        return "flops"

    def _relative(self, path: Path | str) -> str:
        return str(Path(path).relative_to(self.out_dir))

    def _report(self, record: dict, dense: dict | None) -> None:
        """The step's deployments, and the time spent and left."""
        for entry in record["deployments"]:
            if entry["file"] is None:
                self.say(f"  {entry['precision']}: refused ({entry['refused']})")
                continue
            low, high = entry["loss_interval"]
            dice_low, dice_high = entry["dice_interval"]
            self.say(
                f"  {entry['precision']} ({entry['executed_precision']}): {entry['latency_ms']:.2f} ms, {entry['speedup']:.2f}x over {deploy.REFERENCE}; "
                f"Dice {entry['dice']:.4f} [{_number(dice_low)}, {_number(dice_high)}] on {entry['num_images']} test images, "
                f"loss {100 * entry['loss']:.2f} points [{100 * low:.2f}, {100 * high:.2f}] {'within' if entry['within'] else 'BEYOND'} "
                f"{self.settings.tolerance:g}"
            )
        dense = dense or record
        candidates = [r for r in self.records if r["step"] == "candidate"]
        outcomes = [_outcome(r, self.goal, self._retimed()) for r in [dense, *candidates]]
        remaining = len(open_rungs(self.settings.budgets, outcomes, self._needed(dense)))
        per_rung = sum(r["seconds"] for r in candidates) / len(candidates) if candidates else 2 * dense["seconds"]  # a rung also fine-tunes
        left = per_rung * remaining
        if self.settings.max_minutes is not None:
            left = min(left, max(0.0, 60 * self.settings.max_minutes - self._spent()) + per_rung)  # the rung started last runs to its end
        self.say(f"  {minutes(self._spent())} spent; up to {remaining} more rung(s), ~{minutes(left)} left if all are tried")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


_RESOURCE_NAMES = {"flops": "MACs", "latency": "latency"}


def _speedup(deployment: dict, budget: float, retimed: dict) -> float:
    """A file's speed-up over dense ONNX Runtime fp32: its step's figure, or the lower one a final timing run measured."""
    return min(deployment["speedup"], retimed.get((budget, deployment["precision"]), math.inf))


def _outcome(record: dict, goal, retimed: dict) -> Outcome:
    """What a step showed: its fastest deployment within the tolerance (else its fastest) against the goal."""
    timed = [d for d in record["deployments"] if d["file"] is not None]
    if not timed:  # an unreachable rung: nothing was pruned, deployed or timed
        return Outcome(record["budget"], False, 0.0, False, unreachable=True, reachable=record.get("reachable"))
    within = [d for d in timed if d["within"]]
    best = max(within or timed, key=lambda d: _speedup(d, record["budget"], retimed))
    speedup = _speedup(best, record["budget"], retimed)
    return Outcome(record["budget"], bool(within), speedup, goal.met(speedup, best["latency_ms"] * best["speedup"] / speedup))


def _choose(dense: dict, candidates: list[dict], retimed: dict) -> tuple[dict, dict]:
    """The fastest deployment within the tolerance over every step (the dense fp32 file always qualifies). Steps are
    timed in runs of their own, so "fastest" is the highest speed-up over the dense ONNX Runtime fp32 file timed in
    the same run, not the lowest latency: a ratio stays put when the machine is busier during one step than another."""
    pool = [(step, d) for step in [dense, *candidates] for d in step["deployments"] if d["file"] is not None and d["within"]]
    if not pool:  # dense fp32 against itself loses nothing, so the pool is never empty; kept for a hand-edited log
        pool = [(dense, _fp32(dense))]
    return max(pool, key=lambda pair: _speedup(pair[1], pair[0]["budget"], retimed))


def _key(choice: tuple[dict, dict]) -> list:
    step, deployment = choice
    return [step["budget"], deployment["precision"]]


def _describe(step: dict, deployment: dict) -> str:
    where = "the dense model" if step["step"] == "dense" else f"{step['method']} at {fraction(step['budget'])}"
    return f"{where} in {deployment['precision']}"


def _fp32(record: dict) -> dict:
    return next(d for d in record["deployments"] if d["precision"] == "fp32")


def _parts(path: Path) -> list[Path]:
    return [path.with_suffix(".bin"), path] if path.suffix == ".xml" else [path]


def _check_identity(saved: dict, current: dict, log_path: Path) -> None:
    differs = [{"pruned": "set of given pruned models"}.get(key, key) for key in ("model", "data", "pruned") if saved.get(key) != current.get(key)]
    differs += [f"--{key.replace('_', '-')}" for key in current["settings"] if saved["settings"].get(key) != current["settings"][key]]
    if differs:
        raise ValueError(f"{str(log_path)!r} is an optimize run of another {', '.join(differs)}; resume it with the same model, data and options, "
                         "or choose another --out to start over.")
