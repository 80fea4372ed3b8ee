"""The two entry points every caller uses: `prune` (structured, any method) and `sparsify` (unstructured).

The command line, the sweep and the demo all call these, so the policy of how a method is run (which
settings it takes, what it needs, what it defaults to, how it is fine-tuned) lives here once.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras

from segprune import defaults
from segprune.cost.resources import parse_target, resource_after
from segprune.data.python import DataLike, in_memory
from segprune.graph.groups import ChannelGraph, build_channel_graph
from segprune.inference import measurement_size
from segprune.metrics import check_fits_data
from segprune.models.checks import check_finite_weights
from segprune.progress_lines import LineReporters
from segprune.search.evaluation import CandidateSettings
from segprune.search.greedy import greedy_search
from segprune.search.kinds import MASK_RCNN_METHODS, ModelKind, model_kind, segmentation_data  # noqa: F401  (MASK_RCNN_METHODS: read here by the instance experiments)
from segprune.search.random_search import random_search
from segprune.search.settings import SearchResult, SearchSettings
from segprune.sizes import format_size
from segprune.sparse.magnitude import magnitude_prune
from segprune.sparse.regularised import l0_sparsify, l1_sparsify
from segprune.sparse.sparsity import SparsifyResult
from segprune.structured.context import RunContext
from segprune.structured.heads import HeadsSummary
from segprune.structured.importance import CRITERIA
from segprune.structured.oneshot import prune_graph
from segprune.structured.regularised import l0_channel_prune, slimming_prune
from segprune.structured.selection import Strategy
from segprune.structured.summary import PruningSummary, pruning_summary
from segprune.training import DistillConfig, EpochReporter, TrainConfig, TrainResult
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
        summary: Channels, MACs and parameters per layer before and after, at `image_size` (a Mask R-CNN's trunk,
            before its heads step and after).
        notes: What the method wants the user to know (gates that closed, targets tightened, ...).
        training: The fine-tuning runs (regularised methods train twice).
        search: The search's own result (configuration, candidates, timing) for greedy / random search.
        search_folder: Where the search keeps its log and models (None when it ran in a temporary folder).
        seconds: Wall-clock time of the whole call.
        heads: A Mask R-CNN pruned with `heads=` or `pyramid=`: its RoI heads' MACs and parameters per region before
            and after, and the pyramid's width.
    """

    model: keras.Model
    method: str
    summary: PruningSummary | None = None
    notes: list[str] = field(default_factory=list)
    training: list[TrainResult] = field(default_factory=list)
    search: SearchResult | None = None
    search_folder: Path | None = None
    seconds: float = 0.0
    heads: HeadsSummary | None = None

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
    heads: float | None = None,
    pyramid: float | None = None,
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
        model: A trained functional model, or a `MaskRCNN` (its trunk is pruned, its RoI heads kept unless `heads` is given; data-free
            one-shot criteria or a search, whose candidates are scored by validation mask AP; trained on an
            `InstanceDataset`); it is never modified.
        method: A one-shot importance criterion (`"l1"`, `"l2"`, `"bn-scale"`, `"taylor"`, `"activation"`,
            `"random"`, `"mutual-info"`), a regularised method (`"l0-channel"`, `"slimming"`) or a search
            (`"greedy"`, `"random-search"`).
        target: A budget such as `"flops=0.25"` or `"params=0.5"` (searches also take `"latency=F"`).
        ratio: One-shot only, instead of `target`: the share of channels to remove from every group (or a
            dict of layer name to ratio, or a selection strategy).
        heads: A Mask R-CNN only: also remove this share of channels, in [0, 1), from every prunable group of its RoI
            heads (the box head's dense layers, the mask head's convolutions), which run once per region and cost more
            end to end than the trunk; ranked by `method`'s criterion (l1 for a search) and pruned before the trunk, so
            a search scores its candidates with the heads that ship. A MACs or parameter `target` still prices the trunk
            alone (a share of the dense trunk); a latency target is a share of the whole exported
            detector's latency with its heads pruned (what the search times); `PruneResult.heads` gives the heads' MACs
            per region. None (the default) keeps them whole.
        pyramid: A Mask R-CNN only: remove this share, in [0, 1), of the FPN pyramid's channels that the heads pool (each
            level's convolution, the shared RPN convolution's input, the heads' first layers), with the heads' step. It
            speeds the whole detector most (RoIAlign moves every channel for every proposal) and costs the most AP (on
            the nuclei, halved: 8-11 points of AP50). A MACs or parameter `target` stays a share of the dense trunk
            (the pyramid channels removed count toward it). None (the default) keeps it whole.
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
    family, kind = _FAMILIES[method], model_kind(model)
    ignore = (*ignore, *(name for name in kind.kept_whole(model) if name not in ignore))
    if target is not None:
        parse_target(target)  # a malformed target fails here, before any work
    family.check_amount(method, target, ratio, ignore)
    kind.check_request(method, family.family, dict(train_config=train_config, distill=distill, folder=folder, resume=resume, target=target, **method_settings))
    check_finite_weights(model)
    dense_network = kind.network(model)
    model, heads_summary = kind.prune_heads(model, heads, method, round_to, ignore, pyramid)
    if progress:
        printed = LineReporters(detector=kind.detector)
        on_epoch, on_candidate, on_search_start = on_epoch or printed.epoch, on_candidate or printed.candidate, on_search_start or printed.plan
    finetune_epochs = kind.default_finetune_epochs(family.family) if finetune_epochs is None else finetune_epochs
    if finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be >= 0, got {finetune_epochs}.")
    context = RunContext(
        method, family.family, target=target, ratio=ratio, finetune_epochs=finetune_epochs, round_to=round_to, ignore=ignore,
        image_size=measurement_size(kind.network(model), image_size), seed=seed,
        # what every phase trains with when none is given, named so a resume compares rates
        train_config=train_config or TrainConfig(patience=None), distill=kind.distillation(distill), checkpoint_path=checkpoint_path,
        folder=folder, resume=resume, on_epoch=on_epoch, on_candidate=on_candidate, on_search_start=on_search_start, settings=method_settings,
        heads=heads, pyramid=pyramid,
    )
    resuming = resume and (_state_exists(checkpoint_path) or (folder is not None and Path(folder).exists()))
    context = replace(context, data=kind.training_data(model, data, context, resuming))
    if seed is not None:
        keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    network = kind.network(model)
    graph = build_channel_graph(network, ignore, input_shape=context.image_size)  # the one channel graph of the dense network
    if pyramid and context.target is not None:  # the heads step narrowed the pyramid, part of the trunk
        context = replace(context, target=_share_of_dense(context.target, dense_network, graph, ignore, context.image_size))
    result = family.prune(model, kind, graph, context)
    result.summary = pruning_summary(dense_network, kind.network(result.model), context.image_size, pinned=graph.pinned)
    result.heads = heads_summary
    result.seconds = time.perf_counter() - started
    return result


def _share_of_dense(target: str, dense_network: keras.Model, graph: ChannelGraph, ignore: Iterable[str], image_size: tuple[int, int]) -> str:
    """A MACs or parameter target for `graph`'s network that keeps the share of `dense_network`'s that `target` names.

    `pyramid=` narrows a detector's pyramid before its trunk is pruned, and `flops=0.5` still means half the dense
    trunk's MACs: the part the heads step removed counts toward it. A latency target is left as it is (a search
    times the detector with its heads pruned as its dense reference).
    """
    resource, fraction = parse_target(target)
    if resource == "latency":
        return target
    dense = resource_after(build_channel_graph(dense_network, ignore, input_shape=image_size), [], resource)
    narrowed = resource_after(graph, [], resource)
    if fraction * dense >= narrowed:  # the pyramid step alone went past the target: nothing left for the trunk to do
        raise ValueError(
            f"pyramid= alone leaves the trunk at {narrowed / dense:.3f} of its dense {resource}, already within {target}; "
            "lower the pyramid ratio (--prune-pyramid) or ask for a smaller target."
        )
    return f"{resource}={fraction * dense / narrowed!r}"


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
    data = segmentation_data(model, data, resume and _state_exists(checkpoint_path))
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


def _state_exists(checkpoint_path: str | Path | None) -> bool:
    return checkpoint_path is not None and run_folder(checkpoint_path).exists()


def _check_method(method: str, table: Mapping[str, tuple[str, ...]], settings: Mapping[str, object]) -> None:
    if method not in table:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(table)}.")
    unknown = sorted(set(settings) - set(table[method]))
    if unknown:
        raise ValueError(f"Method {method!r} takes no setting(s) {unknown}; its settings are {list(table[method])}.")


class _Family:
    """A family of structured methods: which amounts it takes, and how it prunes inside the run's state."""

    family = ""

    def check_amount(self, method: str, target: str | None, ratio, ignore: tuple[str, ...]) -> None:
        raise NotImplementedError

    def prune(self, model: keras.Model, kind: ModelKind, graph: ChannelGraph, context: RunContext) -> PruneResult:
        """The method, then `prune`'s fine-tune, inside the run's state (kept beside the checkpoint while it trains).

        `kind` is `model`'s kind and `graph` the channel graph of its network with `context.ignore` applied, traced at
        `context.image_size`: `prune` finds both once per call."""
        with kind.open_run(model, context, _run_settings(context)) as run:
            result = self.pruned(model, kind, graph, context, run)
            _finish(result, model, kind, context, run)
        return result

    def pruned(self, model: keras.Model, kind: ModelKind, graph: ChannelGraph, context: RunContext, run: RunState) -> PruneResult:
        raise NotImplementedError


class _OneShot(_Family):
    """One-shot pruning: channels are scored once by a criterion and the least important removed, to a `ratio` or a
    flops / params `target`; the pruned architecture is the run's first phase, `prune`'s fine-tune its second."""

    family = "oneshot"

    def check_amount(self, method: str, target: str | None, ratio, ignore: tuple[str, ...]) -> None:
        if (target is None) == (ratio is None):
            raise ValueError(f"Give exactly one of target= (e.g. 'flops=0.5') or ratio= (e.g. 0.5) for method {method!r}.")
        if target is not None and parse_target(target).resource == "latency":
            raise ValueError("One-shot methods take flops= or params= targets; a latency target needs method='greedy' or 'random-search'.")

    def pruned(self, model: keras.Model, kind: ModelKind, graph: ChannelGraph, context: RunContext, run: RunState) -> PruneResult:
        if run.phase("prune") is not None:  # resuming its fine-tune: the pruned architecture was kept
            return PruneResult(model=run.model("prune"), method=context.method)
        network = prune_graph(
            graph, ratio=context.selection(), importance=context.method, round_to=context.round_to, data=kind.criterion_data(context.data),
            target=context.target, compensate=bool(context.setting("compensate", False)),
        )
        pruned = kind.with_network(model, network)
        run.finish("prune", {}, pruned)
        return PruneResult(model=pruned, method=context.method)


class _Regularised(_Family):
    """L0 channel gates or network slimming: a regularised training phase, then the surgery to a flops / params `target`."""

    family = "regularised"

    def check_amount(self, method: str, target: str | None, ratio, ignore: tuple[str, ...]) -> None:
        if ratio is not None or target is None:
            raise ValueError(f"Method {method!r} prunes to a budget: give target= (e.g. 'flops=0.25'), not ratio=.")
        if parse_target(target).resource == "latency":
            raise ValueError(f"Method {method!r} takes flops= or params= targets; a latency target needs method='greedy' or 'random-search'.")

    def pruned(self, model: keras.Model, kind: ModelKind, graph: ChannelGraph, context: RunContext, run: RunState) -> PruneResult:
        options = {"strength": context.setting("strength")} if context.setting("strength") is not None else {}
        common = dict(
            epochs=context.setting("regularise_epochs", defaults.REGULARISE_EPOCHS), finetune_epochs=0, round_to=context.round_to,
            ignore=context.ignore, config=context.train_config, on_epoch=context.on_epoch, run=run, image_size=context.image_size, **options,
        )
        if context.method == "slimming":  # the graph of the trained copy ranks its |gamma|
            outcome = slimming_prune(model, context.data, context.target, **common)
        else:  # the gates are placed by layer name: the dense graph places them on the trained copy
            outcome = l0_channel_prune(model, context.data, context.target, graph=graph, **common)
        return PruneResult(model=outcome.model, method=context.method, notes=list(outcome.notes), training=list(outcome.training))


class _Search(_Family):
    """Greedy or random search over the groups' widths to a flops, params or latency `target`, in the user's folder
    (where it resumes) or a temporary one; `prune`'s fine-tune follows, in a run state of its own."""

    family = "search"

    def check_amount(self, method: str, target: str | None, ratio, ignore: tuple[str, ...]) -> None:
        if ratio is not None or target is None:
            raise ValueError(f"Method {method!r} prunes to a budget: give target= (e.g. 'flops=0.25'), not ratio=.")
        if ignore:
            raise ValueError("ignore= is not supported by the searches yet; use a one-shot method to keep layers whole.")

    def prune(self, model: keras.Model, kind: ModelKind, graph: ChannelGraph, context: RunContext) -> PruneResult:
        result = self.searched(model, graph, context)
        settings = {**_run_settings(context, common_only=True), "configuration": result.search.config}  # the search resumes from its folder
        with kind.open_run(model, context, settings) as run:
            _finish(result, model, kind, context, run)
        return result

    def searched(self, model: keras.Model, graph: ChannelGraph, context: RunContext) -> PruneResult:
        settings, candidates = _search_settings(context)
        data_source = context.setting("data_source")
        if data_source is None and in_memory(context.data) and settings.executor == "local":
            data_source = context.data  # worker processes get a copy of the arrays (the dataset pickles)
        common = dict(resume=context.resume, data_source=data_source, on_candidate=context.on_candidate, on_epoch=context.on_epoch,
                      on_start=context.on_search_start, graph=graph)
        scratch = tempfile.TemporaryDirectory(prefix="segprune-search-") if context.folder is None else contextlib.nullcontext(str(context.folder))
        with scratch as folder:
            if context.method == "greedy":
                outcome = greedy_search(model, context.data, Path(folder), settings, candidates, iterations=context.setting("iterations", defaults.GREEDY_ITERATIONS), **common)
            else:
                outcome = random_search(
                    model, context.data, Path(folder), settings, candidates, context.setting("candidates", defaults.SEARCH_CANDIDATES),
                    context.setting("accuracy_floor"), **common,
                )
        search_folder = Path(context.folder) if context.folder is not None else None
        return PruneResult(model=outcome.model, method=context.method, notes=list(outcome.notes), search=outcome, search_folder=search_folder)


_FAMILIES = {**dict.fromkeys(ONESHOT_METHODS, _OneShot()), **dict.fromkeys(REGULARISED_METHODS, _Regularised()), **dict.fromkeys(SEARCH_METHODS, _Search())}


def _finish(result: PruneResult, dense: keras.Model, kind: ModelKind, context: RunContext, run: RunState) -> None:
    """What every method ends with: the model kind's fine-tune (none with `finetune_epochs=0`), then the saved result."""
    training, notes = kind.finetune(result.model, dense, context, run)
    result.training += training
    result.notes += notes
    kind.complete(run, result.model, context)


def _run_settings(context: RunContext, common_only: bool = False) -> dict:
    """What identifies a run, so that a resume refuses another run's state: every setting that changes what the
    method does (a search adds the configuration it found, having resumed from its own folder)."""
    common = dict(target=context.target, finetune_epochs=context.finetune_epochs, seed=context.seed, train_config=context.train_config,
                  distill=context.distill)
    if common_only:
        return common
    settings = {**common, "ratio": context.ratio, "round_to": context.round_to, "ignore": context.ignore, **context.settings}
    if context.target is not None:  # a budget is measured at this size: another size prunes other channels
        settings["image_size"] = format_size(context.image_size)
    return settings


def _search_settings(context: RunContext) -> tuple[SearchSettings, CandidateSettings]:
    """A search's settings from `prune`'s: the fine-tune after it is `prune`'s, as for every method."""
    search_settings = SearchSettings(
        target=context.target, image_size=context.image_size, threads=context.setting("threads", defaults.THREADS), round_to=context.round_to,
        final_epochs=0, workers=context.setting("workers", 1), time_result=context.setting("time_result", True),
        max_minutes=context.setting("max_minutes"), executor=context.setting("executor", "local"), ray_address=context.setting("ray_address"),
        runtime=context.setting("runtime", "onnxruntime"), precision=context.setting("precision", "fp32"), heads=context.heads,
        pyramid=context.pyramid,
    )
    candidate_settings = CandidateSettings(
        finetune_steps=context.setting("candidate_steps", defaults.CANDIDATE_STEPS), importance="l1", seed=0 if context.seed is None else context.seed
    )
    return search_settings, candidate_settings
