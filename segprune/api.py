"""The two entry points every caller uses: `prune` (structured, any method) and `sparsify` (unstructured).

The command line, the sweep and the demo all call these, so the policy of how a method is run (which
settings it takes, what it needs, what it defaults to, how it is fine-tuned) lives here once.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import keras

from segprune import defaults
from segprune.cost.resources import parse_target
from segprune.data.dataset import SegmentationDataset
from segprune.data.instances import InstanceDataset
from segprune.data.python import DataLike, as_dataset, check_fingerprintable, in_memory
from segprune.inference import measurement_size
from segprune.instance_metrics import evaluate_instances
from segprune.metrics import check_fits_data
from segprune.models.checks import check_finite_weights
from segprune.models.mask_rcnn import MaskRCNN, fit_mask_rcnn, save_mask_rcnn
from segprune.models.outputs import output_kind
from segprune.progress_lines import LineReporters
from segprune.search.evaluation import CandidateSettings
from segprune.search.greedy import greedy_search
from segprune.search.random_search import random_search
from segprune.search.settings import SearchResult, SearchSettings
from segprune.sizes import format_size
from segprune.sparse.magnitude import magnitude_prune
from segprune.sparse.regularised import l0_sparsify, l1_sparsify
from segprune.sparse.sparsity import SparsifyResult
from segprune.structured.importance import CRITERIA
from segprune.structured.oneshot import prune_channels
from segprune.structured.regularised import l0_channel_prune, slimming_prune
from segprune.structured.selection import GlobalRanking, Strategy
from segprune.structured.summary import PruningSummary, pruning_summary
from segprune.training import DistillConfig, EpochReporter, TrainConfig, TrainResult, train_phase
from segprune.training.run_state import RunState, run_folder, run_identity

ONESHOT_METHODS = CRITERIA  # one-shot pruning, named by its importance criterion
REGULARISED_METHODS = ("l0-channel", "slimming")
SEARCH_METHODS = ("greedy", "random-search")
STRUCTURED_METHODS = (*ONESHOT_METHODS, *REGULARISED_METHODS, *SEARCH_METHODS)
SPARSE_METHODS = ("magnitude", "l1", "l0")

# The settings each method accepts beyond the common arguments of `prune` / `sparsify` ("l1" names both a
# one-shot criterion and a sparse method, hence two tables).
_SEARCH_SETTINGS = ("candidate_steps", "threads", "runtime", "precision", "workers", "data_source", "time_result", "max_minutes", "executor", "ray_address")
STRUCTURED_SETTINGS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(ONESHOT_METHODS, ("global_ranking", "compensate")),
    **dict.fromkeys(REGULARISED_METHODS, ("regularise_epochs", "strength")),
    "greedy": ("iterations", *_SEARCH_SETTINGS),
    "random-search": ("candidates", "accuracy_floor", *_SEARCH_SETTINGS),
}
SPARSE_SETTINGS: dict[str, tuple[str, ...]] = {
    "magnitude": ("schedule", "ranking", "pattern"),
    "l1": ("strength", "recovery_epochs"),
    "l0": ("strength", "recovery_epochs"),
}

CandidateReporter = Callable[[dict, dict], None]


@dataclass
class PruneResult:
    """What `prune` returns, whatever the method.

    Attributes:
        model: The smaller plain Keras model (fine-tuned when `finetune_epochs` > 0).
        method: The method that pruned it.
        summary: Channels, MACs and parameters per layer before and after, at `image_size`.
        notes: What the method wants the user to know (gates that closed, targets tightened, ...).
        training: The fine-tuning runs (regularised methods train twice).
        search: The search's own result (configuration, candidates, timing) for greedy / random search.
        search_folder: Where the search keeps its log and models (None when it ran in a temporary folder).
        seconds: Wall-clock time of the whole call.
    """

    model: keras.Model
    method: str
    summary: PruningSummary | None = None
    notes: list[str] = field(default_factory=list)
    training: list[TrainResult] = field(default_factory=list)
    search: SearchResult | None = None
    search_folder: Path | None = None
    seconds: float = 0.0

    @property
    def finetune_seconds(self) -> float:
        return sum(run.seconds for run in self.training)

    @property
    def finetune_epochs(self) -> int:
        return sum(len(run.history) for run in self.training)


def prune(
    model: keras.Model,
    method: str = "l1",
    *,
    target: str | None = None,
    ratio: float | Mapping[str, float] | Strategy | None = None,
    data: DataLike | None = None,
    finetune_epochs: int | None = None,
    round_to: int = defaults.ROUND_TO,
    ignore: Iterable[str] = (),
    image_size: int | tuple[int, int] | str | None = None,
    seed: int | None = None,
    train_config: TrainConfig | None = None,
    distill: DistillConfig | bool | None = defaults.DISTILL,
    checkpoint_path: str | Path | None = None,
    folder: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: EpochReporter | None = None,
    on_candidate: CandidateReporter | None = None,
    on_search_start: Callable[[dict], None] | None = None,
    **method_settings,
) -> PruneResult:
    """Removes channels from `model` by any structured method and returns a smaller plain model.

    Args:
        model: A trained functional model, or a `MaskRCNN` (its trunk is pruned, its RoI heads kept; data-free
            one-shot criteria or a search, whose candidates are scored by validation mask AP; trained on an
            `InstanceDataset`); it is never modified.
        method: A one-shot importance criterion (`"l1"`, `"l2"`, `"bn-scale"`, `"taylor"`, `"activation"`,
            `"random"`, `"mutual-info"`), a regularised method (`"l0-channel"`, `"slimming"`) or a search
            (`"greedy"`, `"random-search"`).
        target: A budget such as `"flops=0.25"` or `"params=0.5"` (searches also take `"latency=F"`).
        ratio: One-shot only, instead of `target`: the share of channels to remove from every group (or a
            dict of layer name to ratio, or a selection strategy).
        data: The training data; needed by fine-tuning, the data-driven criteria and every trained method. A
            `SegmentationDataset`, or what `model.fit` takes: `(images, masks)` NumPy arrays, a `tf.data.Dataset` or
            `keras.utils.PyDataset` of `(images, masks)` batches, or a dict of them by split; those are read once
            with the model's class count and split as a folder would be (`segprune.data.as_dataset`, which you
            may call yourself for `ignore_index=`, other fractions, or to evaluate on the test split it holds out).
        finetune_epochs: Fine-tuning after pruning; defaults to 0 for one-shot methods and 20 for the others
            (`segprune.defaults`, shared with the command line).
        round_to: Every pruned group keeps a multiple of this many channels.
        ignore: Layers whose channels must stay (not supported by the searches).
        image_size: The input size at which MACs budgets, latency and the summary are measured: N (square) or
            (height, width), e.g. 256 or (256, 512); by default the size the model was built for, else 256x256.
        seed: Seeds Keras (initialisation, batches, random criteria and searches) when given.
        train_config: How fine-tuning trains.
        distill: Fine-tune with knowledge distillation from `model` (the dense teacher's soft masks next to
            the ground truth): True (the default, as on the command line) with `DistillConfig()`'s temperature
            and weight, or a `DistillConfig`; False or None trains on the ground truth alone. A Mask R-CNN
            fine-tunes on its ground truth only (a `DistillConfig` is refused for it).
        checkpoint_path: Where the finished model is saved (every method), and beside which a trained run
            keeps its state (`<checkpoint_path>.resume/`) until it finishes.
        folder: A search's folder (log, candidate models, latency table); a temporary one when None.
        resume: Continue the interrupted run that wrote `checkpoint_path` (searches: the search logged in
            `folder`, then the fine-tune kept beside `checkpoint_path`). A state from another method, model, data or settings is refused, naming what
            differs; without `resume` an existing state is an error. With no checkpoint_path (or folder)
            there is nothing to continue and the run starts afresh. Ctrl-C stops a resumable run when
            the current epoch ends and raises `RunInterrupted` (the state is kept).
        progress: Print a line per fine-tuning epoch, search plan and search candidate to stderr, as the
            command line does, for every event that has no callback of its own; False prints nothing.
        on_epoch: Progress callback for every training epoch.
        on_candidate: Progress callback for every evaluated search candidate (with "done", "expected",
            "elapsed" and "remaining" seconds, None until a few candidates have finished).
        on_search_start: Called once before a search's first candidate with its plan (`"expected"` candidates).
        **method_settings: The method's own settings (`STRUCTURED_SETTINGS[method]` lists them): one-shot
            `global_ranking`, `compensate`; regularised `regularise_epochs`, `strength`; greedy `iterations`;
            random search `candidates`, `accuracy_floor`; searches `candidate_steps`, `threads`,
            `workers`, `data_source`, `time_result`, `max_minutes` (stop at the best result so far),
            `executor` (`"local"` or `"ray"`), `ray_address`.

    Returns:
        A `PruneResult`.

    Example:
        >>> result = segprune.prune(model, "l1", target="flops=0.5", data=data, finetune_epochs=10)
        >>> result.summary.macs_ratio <= 0.5
        True
    """
    _check_method(method, STRUCTURED_SETTINGS, method_settings)
    _check_amount(method, target, ratio)
    check_finite_weights(model)
    image_size = measurement_size(model.trunk if isinstance(model, MaskRCNN) else model, image_size)
    if progress:
        printed = LineReporters(detector=isinstance(model, MaskRCNN))
        on_epoch, on_candidate, on_search_start = on_epoch or printed.epoch, on_candidate or printed.candidate, on_search_start or printed.plan
    if isinstance(model, MaskRCNN):
        # distillation is on by default; a detector's fine-tune has no distillation to turn on
        unsupported = {"train_config": train_config, "distill": distill if isinstance(distill, DistillConfig) else None}
        if method not in SEARCH_METHODS:  # a search keeps its log in folder and resumes from it
            unsupported.update(folder=folder, resume=resume or None)
        search = dict(folder=folder, resume=resume, on_candidate=on_candidate, on_search_start=on_search_start)
        return _prune_mask_rcnn(
            model, method, target, ratio, data, finetune_epochs or 0, round_to, tuple(ignore), image_size, seed, checkpoint_path,
            on_epoch, method_settings, [name for name, value in unsupported.items() if value is not None], search,
        )
    data = _python_data(model, data, resume and (_state_exists(checkpoint_path) or (folder is not None and Path(folder).exists())))
    if finetune_epochs is None:
        finetune_epochs = defaults.ONESHOT_FINETUNE_EPOCHS if method in ONESHOT_METHODS else defaults.FINETUNE_EPOCHS
    if finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be >= 0, got {finetune_epochs}.")
    if data is None and (finetune_epochs or method not in ONESHOT_METHODS):
        needs = "fine-tuning" if method in ONESHOT_METHODS else f"method {method!r}"
        raise ValueError(f"{needs} trains on data: pass data=segprune.load_data(...) (or --data on the command line).")
    if data is not None:
        check_fits_data(model, data)  # before any work or run state: a classifier or another class count is refused now
    distill = _distill_config(distill)
    train_config = train_config or TrainConfig(patience=None)  # what every phase trains with when none is given, named so a resume compares rates
    if seed is not None:
        keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    ignore = tuple(ignore)
    if method not in SEARCH_METHODS:
        settings = dict(target=target, ratio=ratio, finetune_epochs=finetune_epochs, round_to=round_to, ignore=ignore, seed=seed,
                        train_config=train_config, distill=distill, **method_settings)
        if target is not None:  # a budget is measured at this size: another size prunes other channels
            settings["image_size"] = format_size(image_size)
        trains = bool(finetune_epochs) or method in REGULARISED_METHODS
        identity = run_identity("prune", method, model, data, settings)
        with RunState.open(checkpoint_path if trains else None, identity, resume) as run:
            if method in ONESHOT_METHODS:
                result = _oneshot(model, method, target, ratio, data, round_to, ignore, image_size, method_settings, run)
            else:
                result = _regularised(model, method, target, data, round_to, ignore, image_size, train_config, on_epoch, method_settings, run)
            _finetune(result, model, data, finetune_epochs, train_config, distill, on_epoch, run)
            run.complete(result.model, checkpoint_path)
    else:
        if ignore:
            raise ValueError("ignore= is not supported by the searches yet; use a one-shot method to keep layers whole.")
        search_settings, candidate_settings = _search_settings(target, image_size, round_to, seed, method_settings)
        # the user's folder, or a temporary one removed afterwards
        scratch = tempfile.TemporaryDirectory(prefix="segprune-search-") if folder is None else contextlib.nullcontext(str(folder))
        with scratch as search_folder:
            result = _search(
                model, method, data, Path(search_folder), search_settings, candidate_settings, resume, on_candidate, on_epoch, method_settings,
                on_search_start,
            )
        result.search_folder = Path(folder) if folder is not None else None
        identity = run_identity("prune", method, model, data, dict(target=target, finetune_epochs=finetune_epochs, seed=seed,
                                train_config=train_config, distill=distill, configuration=result.search.config))
        with RunState.open(checkpoint_path if finetune_epochs else None, identity, resume) as run:
            _finetune(result, model, data, finetune_epochs, train_config, distill, on_epoch, run)
            run.complete(result.model, checkpoint_path)
    result.summary = pruning_summary(model, result.model, image_size)
    result.seconds = time.perf_counter() - started
    return result


def sparsify(
    model: keras.Model,
    method: str = "magnitude",
    *,
    sparsity: float,
    data: DataLike,
    epochs: int = defaults.SPARSIFY_EPOCHS,
    ignore: Iterable[str] = (),
    seed: int | None = None,
    train_config: TrainConfig | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: EpochReporter | None = None,
    **method_settings,
) -> SparsifyResult:
    """Zeroes `sparsity` of `model`'s kernel weights while fine-tuning; returns a plain model with exact zeros.

    Args:
        model: A trained functional model; it is never modified.
        method: `"magnitude"` (masks on a schedule), `"l1"` or `"l0"` (regularisation, then exact zeros).
        sparsity: Share of kernel weights to zero, in (0, 1).
        data: The training data, in any form `prune` takes.
        epochs: Fine-tuning epochs (for l1 / l0: under the penalty, before recovery).
        ignore: Layers whose kernels stay dense.
        seed: Seeds Keras and the batches when given.
        train_config: How fine-tuning trains (patience is switched off: the schedule sets the length).
        checkpoint_path: Where the finished sparse model is saved, and beside which the run keeps its state
            (`<checkpoint_path>.resume/`: masks and the schedule's step, L0 gates and their optimizer state,
            the phase reached) until it finishes.
        resume: Continue the interrupted run that wrote `checkpoint_path`, as in `prune`.
        progress: Print a line per epoch to stderr, as the command line does, unless `on_epoch` is given; False prints nothing.
        on_epoch: Progress callback for every epoch.
        **method_settings: magnitude `schedule` ("polynomial" | "constant" | a schedule), `ranking`
            ("global" | "layer"), `pattern` ("unstructured", "2:4", "block:1x4"); l1 / l0 `strength`,
            `recovery_epochs`.

    Example:
        >>> result = segprune.sparsify(model, "magnitude", sparsity=0.9, data=data, epochs=30)
        >>> round(result.sparsity, 2)
        0.9
    """
    _check_method(method, SPARSE_SETTINGS, method_settings)
    if data is None:
        raise ValueError("Sparse pruning fine-tunes the model: pass data=segprune.load_data(...).")
    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity is the share of kernel weights to zero, in (0, 1); got {sparsity}.")
    check_finite_weights(model)
    data = _python_data(model, data, resume and _state_exists(checkpoint_path))
    check_fits_data(model, data)
    if progress and on_epoch is None:
        on_epoch = LineReporters().epoch
    if seed is not None:
        keras.utils.set_random_seed(seed)
    ignore = tuple(ignore)
    train_config = train_config or TrainConfig(patience=None)  # as every phase trains when none is given, named so a resume compares rates
    identity = run_identity("sparsify", method, model, data, dict(sparsity=sparsity, epochs=epochs, ignore=ignore, seed=seed,
                                                                  train_config=train_config, **method_settings))
    with RunState.open(checkpoint_path, identity, resume) as run:
        if method == "magnitude":
            result = magnitude_prune(
                model, data, sparsity, epochs, method_settings.get("schedule", "polynomial"), method_settings.get("ranking", "global"),
                method_settings.get("pattern"), train_config, ignore, on_epoch, run=run,
            )
        else:
            regularise = l1_sparsify if method == "l1" else l0_sparsify
            result = regularise(model, data, sparsity, epochs, config=train_config, ignore=ignore, on_epoch=on_epoch, run=run, **method_settings)
        run.complete(result.model, checkpoint_path)
    return result


def _python_data(model: keras.Model, data: DataLike | None, resuming: bool) -> SegmentationDataset | InstanceDataset | None:
    """`data` as a dataset: Python data are read once with the classes `model` predicts; resuming refuses data it cannot identify."""
    if data is not None and not isinstance(data, (SegmentationDataset, InstanceDataset)):
        data = as_dataset(data, num_classes=output_kind(model).num_classes)
    if resuming:
        check_fingerprintable(data)
    return data


def _state_exists(checkpoint_path: str | Path | None) -> bool:
    return checkpoint_path is not None and run_folder(checkpoint_path).exists()


def _distill_config(distill: DistillConfig | bool | None) -> DistillConfig | None:
    """`prune`'s `distill` argument as the fine-tune reads it: True is the default distillation, False or None none."""
    if isinstance(distill, DistillConfig) or distill is None:
        return distill
    if isinstance(distill, bool):
        return DistillConfig() if distill else None
    raise ValueError(f"distill takes True, False or a DistillConfig(temperature=..., weight=...), got {distill!r}.")


def _finetune(result: PruneResult, dense: keras.Model, data, epochs: int, config, distill, on_epoch, run: RunState) -> None:
    """The fine-tune every method ends with: the run's `finetune` phase, taught by the dense model when distilling."""
    if epochs:
        teacher = dense if distill is not None else None
        result.training.append(train_phase(run, "finetune", result.model, data, epochs, config, on_epoch, teacher=teacher, distill=distill))


def _search_settings(target, image_size, round_to, seed, method_settings: dict) -> tuple[SearchSettings, CandidateSettings]:
    """A search's settings from `prune`'s arguments; the run and candidate settings are popped from `method_settings`."""
    search_settings = SearchSettings(
        target=target, image_size=image_size, threads=method_settings.pop("threads", defaults.THREADS), round_to=round_to,
        final_epochs=0, workers=method_settings.pop("workers", 1),  # the fine-tune after it is prune's, as for every method
        time_result=method_settings.pop("time_result", True), max_minutes=method_settings.pop("max_minutes", None),
        executor=method_settings.pop("executor", "local"), ray_address=method_settings.pop("ray_address", None),
        runtime=method_settings.pop("runtime", "onnxruntime"), precision=method_settings.pop("precision", "fp32"),
    )
    candidate_settings = CandidateSettings(
        finetune_steps=method_settings.pop("candidate_steps", defaults.CANDIDATE_STEPS), importance="l1", seed=0 if seed is None else seed
    )
    return search_settings, candidate_settings


# Criteria that need no data: the data-driven ones read a segmentation dataset, which a detector does not train on.
MASK_RCNN_METHODS = ("l1", "l2", "bn-scale", "random")


def _prune_mask_rcnn(
    model: MaskRCNN, method, target, ratio, data, finetune_epochs, round_to, ignore, image_size, seed, checkpoint_path, on_epoch, settings,
    unsupported: list[str], search: dict,
) -> PruneResult:
    """Prunes the detector's trunk (encoder, FPN, shared RPN head) one-shot or by a search; the RoI heads are copied.

    The trunk is one functional graph, so the structured path prunes it as any model (its P2-P4, objectness and
    box-delta outputs keep their channels). A search narrows the trunk's groups to a budget of the trunk's
    MACs, scoring each candidate detector by validation mask AP after a few training steps
    (`search.instance_evaluation`). Fine-tuning trains the whole detector and keeps the epoch with the best
    validation mask AP.
    """
    if method not in MASK_RCNN_METHODS and method not in SEARCH_METHODS:
        raise ValueError(
            f"A Mask R-CNN is pruned one-shot by a criterion that needs no data ({', '.join(MASK_RCNN_METHODS)}) or searched "
            f"({', '.join(SEARCH_METHODS)}); method {method!r} scores segmentation Dice, which a detector has not. "
            "Use method='l1' with target= or ratio=, or a search with target=."
        )
    if unsupported:
        raise ValueError(f"Pruning a Mask R-CNN does not take {', '.join(unsupported)}; leave them out.")
    if finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be >= 0, got {finetune_epochs}.")
    trains = bool(finetune_epochs) or method in SEARCH_METHODS
    if trains and not isinstance(data, InstanceDataset):
        raise ValueError(
            f"{'Searching' if method in SEARCH_METHODS else 'Fine-tuning'} a Mask R-CNN trains on instances: pass "
            f"data=load_instance_data(DATA, val_fraction=0.15) (--data DATA on the command line; a folder with instances/), got {type(data).__name__}."
        )
    if trains and not data.splits.get("val"):
        raise ValueError(f"{'Candidates are scored' if method in SEARCH_METHODS else 'Fine-tuning keeps the epoch'} by validation "
                         f"mask AP, and {data.name!r} has no val split: load it with val_fraction=0.15.")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    if settings.get("global_ranking") and ratio is not None and not isinstance(ratio, (Mapping, GlobalRanking)):
        ratio = GlobalRanking(float(ratio))
    if method in SEARCH_METHODS:
        if ignore:
            raise ValueError("ignore= is not supported by the searches yet; use a one-shot method to keep layers whole.")
        search_settings, candidate_settings = _search_settings(target, image_size, round_to, seed, settings)
        folder = search["folder"]
        scratch = tempfile.TemporaryDirectory(prefix="segprune-search-") if folder is None else contextlib.nullcontext(str(folder))
        with scratch as search_folder:
            result = _search(model, method, data, Path(search_folder), search_settings, candidate_settings, search["resume"],
                             search["on_candidate"], on_epoch, settings, search["on_search_start"])
        result.search_folder = Path(folder) if folder is not None else None
        pruned = result.model
    else:
        trunk = prune_channels(
            model.trunk, ratio=0.0 if ratio is None else ratio, importance=method, round_to=round_to, ignore=ignore, target=target,
            compensate=bool(settings.get("compensate", False)), image_size=image_size,
        )
        pruned = MaskRCNN(model.config, trunk, _copy_network(model.box_head), _copy_network(model.mask_head))
        result = PruneResult(model=pruned, method=method)
    if finetune_epochs:
        fit = fit_mask_rcnn(
            pruned, data, finetune_epochs, score=lambda detector: evaluate_instances(detector, data, "val")["ap"], learning_rate=1e-3,
            seed=0 if seed is None else seed, checkpoint_path=checkpoint_path, on_epoch=on_epoch,
        )
        result.notes.append(f"fine-tuned {finetune_epochs} epochs in {fit.seconds:.0f}s; best validation mask AP {fit.best_score:.4f} at epoch {fit.best_epoch}")
    elif checkpoint_path is not None:
        save_mask_rcnn(pruned, checkpoint_path)
    result.summary = pruning_summary(model.trunk, pruned.trunk, image_size)
    result.seconds = time.perf_counter() - started
    return result


def _copy_network(network: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    return copy


def _check_method(method: str, table: Mapping[str, tuple[str, ...]], settings: Mapping[str, object]) -> None:
    if method not in table:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(table)}.")
    unknown = sorted(set(settings) - set(table[method]))
    if unknown:
        raise ValueError(f"Method {method!r} takes no setting(s) {unknown}; its settings are {list(table[method])}.")


def _check_amount(method: str, target: str | None, ratio) -> None:
    if target is not None:
        parse_target(target)  # a malformed target fails here, before any work
    if method in ONESHOT_METHODS:
        if (target is None) == (ratio is None):
            raise ValueError(f"Give exactly one of target= (e.g. 'flops=0.5') or ratio= (e.g. 0.5) for method {method!r}.")
        if target is not None and parse_target(target).resource == "latency":
            raise ValueError("One-shot methods take flops= or params= targets; a latency target needs method='greedy' or 'random-search'.")
        return
    if ratio is not None or target is None:
        raise ValueError(f"Method {method!r} prunes to a budget: give target= (e.g. 'flops=0.25'), not ratio=.")
    if method in REGULARISED_METHODS and parse_target(target).resource == "latency":
        raise ValueError(f"Method {method!r} takes flops= or params= targets; a latency target needs method='greedy' or 'random-search'.")


def _oneshot(model, method, target, ratio, data, round_to, ignore, image_size, settings, run: RunState) -> PruneResult:
    if run.phase("prune") is not None:  # resuming its fine-tune: the pruned architecture was kept
        return PruneResult(model=run.model("prune"), method=method)
    if settings.get("global_ranking") and ratio is not None and not isinstance(ratio, (Mapping, GlobalRanking)):
        ratio = GlobalRanking(float(ratio))
    pruned = prune_channels(
        model, ratio=0.0 if ratio is None else ratio, importance=method, round_to=round_to, ignore=ignore, data=data,
        target=target, compensate=bool(settings.get("compensate", False)), image_size=image_size,
    )
    run.finish("prune", {}, pruned)
    return PruneResult(model=pruned, method=method)


def _regularised(model, method, target, data, round_to, ignore, image_size, train_config, on_epoch, settings, run: RunState) -> PruneResult:
    """The regularised phase and the surgery; the fine-tune that follows is `prune`'s, as for every method."""
    prune_by = l0_channel_prune if method == "l0-channel" else slimming_prune
    options = {"strength": settings["strength"]} if settings.get("strength") is not None else {}
    outcome = prune_by(
        model, data, target, epochs=settings.get("regularise_epochs", defaults.REGULARISE_EPOCHS), finetune_epochs=0, round_to=round_to,
        ignore=ignore, config=train_config, on_epoch=on_epoch, run=run, image_size=image_size, **options,
    )
    return PruneResult(model=outcome.model, method=method, notes=list(outcome.notes), training=list(outcome.training))


def _search(model, method, data, folder, settings, candidates, resume, on_candidate, on_epoch, method_settings, on_start=None) -> PruneResult:
    data_source = method_settings.get("data_source")
    if data_source is None and in_memory(data) and settings.executor == "local":
        data_source = data  # worker processes get a copy of the arrays (the dataset pickles)
    common = dict(resume=resume, data_source=data_source, on_candidate=on_candidate, on_epoch=on_epoch, on_start=on_start)
    if method == "greedy":
        outcome = greedy_search(model, data, folder, settings, candidates, iterations=method_settings.get("iterations", defaults.GREEDY_ITERATIONS), **common)
    else:
        outcome = random_search(
            model, data, folder, settings, candidates, method_settings.get("candidates", defaults.SEARCH_CANDIDATES), method_settings.get("accuracy_floor"), **common
        )
    return PruneResult(model=outcome.model, method=method, notes=list(outcome.notes), search=outcome)
