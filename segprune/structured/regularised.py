"""Channel pruning learnt by regularised fine-tuning, then made real by surgery.

* **L0 channel gates**: one hard-concrete gate per channel class, shared by every layer of its group. It
  multiplies the gamma and beta of every BatchNorm that carries the group's channels, and the kernel and bias
  of producers no BatchNorm follows, so a closed gate makes the channel exactly zero wherever its consumers
  read it (through ReLU-like activations, pooling, resizing, Add and Concatenate). The expected-L0 penalty
  weighs each gate by the MACs its channel carries, so the pressure is towards the budget that matters. Closed gates are removed by the structured
  surgery; if they are not enough for the target, the gates with the lowest log-alpha follow.
* **Network slimming** (Liu et al., ICCV 2017): L1 on BatchNorm's gamma while fine-tuning, then the channels
  with the smallest |gamma| across the whole network are removed to the target.

Both finish with a fine-tune of the smaller model. In a resumable run (`run=`) the regularised phase and the
fine-tune are two phases: the pruned architecture is kept once the first ends, each keeps its training state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from segprune.backend._keras_internals import leaf_layers
from segprune.cost.resources import macs_after, parse_target, resource_after
from segprune.data.dataset import SegmentationDataset
from segprune.graph.groups import ChannelGraph, Group, build_channel_graph
from segprune.graph.handlers import ChannelAxis
from segprune.graph.surgery import remove_channels
from segprune.models.loading import copy_model
from segprune.sparse.gates import deterministic
from segprune.sparse.model import HARD_CONCRETE, GateSpec, Site, SparseModel, strip
from segprune.structured.importance import weight_norm_scores
from segprune.structured.oneshot import COST_INPUT_SIZE, ratio_for_target
from segprune.structured.selection import GlobalRanking
from segprune.training import (
    EpochReporter,
    TrainConfig,
    TrainResult,
    train_phase,
    train_phase_with_trajectory,
    training_from_record,
    training_record,
)
from segprune.training.run_state import RunState


@dataclass
class ChannelPruneResult:
    """The outcome of a regularised channel-pruning run.

    Attributes:
        model: The smaller plain model, fine-tuned.
        resource_fraction: Its share of the dense model's resource (MACs or parameters) at 256x256.
        trajectory: Per epoch of the regularised phase: `{"epoch", "sparsity", "val_dice", "seconds"}`, where
            `sparsity` is the share of the resource the closed gates (L0) or near-zero gammas (slimming) remove.
        training: The regularised run and the final fine-tune.
        notes: Anything the method had to decide (groups without a gate, top-ups to the target).
    """

    model: keras.Model
    resource_fraction: float
    trajectory: list[dict] = field(default_factory=list)
    training: list[TrainResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _consumers(graph: ChannelGraph, tensor_id: int) -> list[int]:
    return [index for index, call in enumerate(graph.trace.calls) if tensor_id in call.input_ids]


def _producer_sites(graph: ChannelGraph, call_index: int, axes: Sequence[ChannelAxis]) -> list[tuple[str, str, int]]:
    """(layer, weight, axis) of a producer's kernel and bias on its output `axes`, unless a BatchNorm alone reads its
    output (that BatchNorm is gated instead)."""
    call = graph.trace.calls[call_index]
    consumers = _consumers(graph, call.output_ids[0])
    if len(consumers) == 1 and call.output_ids[0] not in graph.trace.output_ids:
        follower = graph.trace.calls[consumers[0]].layer
        if isinstance(follower, keras.layers.BatchNormalization) and follower.scale:
            return []
    return [(call.qualified_name, axis.weight, axis.axis) for axis in axes if axis.side == "output"]


def _batch_norm_sites(graph: ChannelGraph) -> list[tuple[np.ndarray, str, str]]:
    """(channel classes, layer, weight) of every BatchNorm's gamma and beta: gating every BatchNorm that carries
    exactly a group's channels keeps a closed channel at zero along the whole group (a depthwise conv's BatchNorm
    would otherwise add its beta back)."""
    sites = []
    for call, outputs in zip(graph.trace.calls, graph.call_outputs):
        layer = call.layer
        if isinstance(layer, keras.layers.BatchNormalization) and outputs:
            weights = (["gamma"] if layer.scale else []) + (["beta"] if layer.center else [])
            sites += [(outputs[0], call.qualified_name, weight) for weight in weights]
    return sites


def channel_gates(graph: ChannelGraph) -> tuple[list[GateSpec], list[Site], dict[str, Group], list[str]]:
    """One hard-concrete gate per prunable group, with the sites it multiplies and its per-channel MACs.

    Returns (gates, sites, group of each gate, names of groups left without a gate and why).
    """
    # The trace is read first (each writing call's channel axes and the weights a gate multiplies there, the
    # BatchNorms), then the groups are asked, the MACs last.
    axes = {
        index: graph.handler(call).channel_axes(call)
        for index, (call, outputs) in enumerate(zip(graph.trace.calls, graph.call_outputs)) if outputs and outputs[0].size
    }
    producer_sites = {
        index: _producer_sites(graph, index, call_axes)
        for index, call_axes in axes.items() if any(axis.side == "output" and axis.kind == "kernel" for axis in call_axes)
    }
    norm_sites = _batch_norm_sites(graph)
    producers: dict[int, list[int]] = {}
    for index in producer_sites:
        producers.setdefault(graph.group_of_class(int(graph.call_outputs[index][0][0])).index, []).append(index)
    gated, skipped = [], []
    for group in graph.prunable_groups():
        calls = producers.get(group.index, [])
        in_order = all(np.array_equal(graph.call_outputs[i][0], group.classes) for i in calls)
        if not calls or not in_order:
            skipped.append(f"group {group.index} ({', '.join(group.producers)}): its producers' channels are not in one order")
            continue
        gated.append((group, calls))
    sites_of_group = []
    seen: set[tuple[str, str]] = set()
    for group, calls in gated:
        name = f"group{group.index}"
        group_sites = [Site(layer, weight, name, axis) for i in calls for layer, weight, axis in producer_sites[i]]
        group_sites += [Site(layer, weight, name, -1) for classes, layer, weight in norm_sites if np.array_equal(classes, group.classes)]
        group_sites = [s for s in group_sites if (s.layer, s.weight) not in seen]
        seen.update((s.layer, s.weight) for s in group_sites)
        sites_of_group.append(group_sites)
    dense = macs_after(graph, [])
    per_channel = [float(dense - macs_after(graph, [group.classes[int(np.flatnonzero(group.prunable)[0])]])) for group, _ in gated]
    gates, sites, group_of_gate = [], [], {}
    for (group, _), group_sites, cost in zip(gated, sites_of_group, per_channel):
        name = f"group{group.index}"
        gates.append(GateSpec(name, HARD_CONCRETE, (group.size,), tuple([max(cost, 1.0)] * group.size)))
        sites += group_sites
        group_of_gate[name] = group
    return gates, sites, group_of_gate, skipped


def _gate_scores(sparse: SparseModel, group_of_gate: dict[str, Group]) -> tuple[dict[int, float], set[int]]:
    """Log-alpha per channel class, and the classes whose deterministic gate is exactly zero."""
    scores, closed = {}, set()
    for name, group in group_of_gate.items():
        log_alpha = keras.ops.convert_to_numpy(sparse.log_alpha(name))
        gate = keras.ops.convert_to_numpy(deterministic(sparse.log_alpha(name)))
        for class_id, value, z in zip(group.classes, log_alpha, gate):
            scores[int(class_id)] = float(value)
            if z == 0:
                closed.add(int(class_id))
    return scores, closed


def _select(graph: ChannelGraph, scores: dict[int, float], closed: set[int], target: str, round_to: int, notes: list[str]) -> list[int]:
    """Removes all closed channels, then the lowest-scored ones until `target` holds (raw global ranking)."""
    unscored = [c for group in graph.prunable_groups() for c in group.classes if c not in scores]
    high = max(scores.values(), default=0.0) + 1e6
    full_scores = {**dict.fromkeys(unscored, high), **scores}
    strategy = ratio_for_target(graph, full_scores, target, round_to, lambda r: GlobalRanking(r, normalize=False))
    removed = set(strategy.select(graph, full_scores, round_to))
    prunable = sum(group.num_prunable for group in graph.prunable_groups())
    if closed - removed:
        closed_share = min(len(closed) / max(prunable, 1), 0.99)
        removed |= set(GlobalRanking(max(closed_share, strategy.ratio), normalize=False).select(graph, full_scores, round_to))
    extra = len(removed - closed)
    if extra:
        notes.append(f"{len(closed)} channels had closed gates; {extra} more with the lowest scores were removed to meet {target}")
    return sorted(removed)


def l0_channel_prune(
    model: keras.Model,
    data: SegmentationDataset,
    target: str = "flops=0.25",
    epochs: int = 15,
    strength: float = 1.0,
    finetune_epochs: int = 20,
    round_to: int = 8,
    ignore: Sequence[str] = (),
    config: TrainConfig | None = None,
    on_epoch: EpochReporter | None = None,
    run: RunState | None = None,
    image_size: tuple[int, int] = COST_INPUT_SIZE,
    *,
    graph: ChannelGraph,
) -> ChannelPruneResult:
    """Learns which channels to drop with MACs-weighted L0 channel gates, then removes them.

    Args:
        model: A trained functional model (left untouched).
        data: Its dataset.
        target: `"flops=F"` or `"params=F"`, the budget as a fraction of the dense model at `image_size`.
        epochs: Epochs of gated training under the penalty.
        strength: Weight of the penalty (the expected share of MACs kept by open gates).
        finetune_epochs: Epochs of fine-tuning for the smaller model.
        round_to, ignore: As in `prune_channels`.
        config, on_epoch: As in `train`.
        run: The resumable run this is (`segprune.prune(..., checkpoint_path=, resume=)` opens it).
        image_size: (height, width) at which the budget's MACs are counted.
        graph: `model`'s channel graph with `ignore` applied, traced at `image_size` (`segprune.prune` builds one per
            call): the gates are placed by layer name, so the dense model's graph places them on its copy.

    Example:
        >>> result = l0_channel_prune(model, data, target="flops=0.25", graph=build_channel_graph(model, input_shape=(256, 256)))
        >>> result.resource_fraction <= 0.25
        True
    """
    resource, _ = parse_target(target)
    run = run or RunState(None, {})
    record = run.phase("l0-channel")
    if record is not None:
        return _finetune_pruned(run.model("l0-channel"), record, data, finetune_epochs, config, on_epoch, run)
    gates, sites, group_of_gate, skipped = channel_gates(graph)
    if not gates:
        raise ValueError(f"Model {model.name!r} has no prunable channel group that a gate can drive; see segprune/graph.")
    working = copy_model(model)
    sparse = SparseModel(working, gates, sites, l0_strength=strength)
    result = ChannelPruneResult(working, 1.0, notes=[f"no gate for {entry}" for entry in skipped])

    def closed_share() -> float:
        return 1.0 - resource_after(graph, sorted(_gate_scores(sparse, group_of_gate)[1]), resource) / resource_after(graph, [], resource)

    result.training.append(train_phase_with_trajectory(sparse, data, epochs, config, closed_share, result.trajectory, on_epoch, run=run, phase="l0-channel"))
    scores, closed = _gate_scores(sparse, group_of_gate)
    plain = strip(sparse)
    plain_graph = build_channel_graph(plain, ignore, input_shape=image_size)
    if [g.size for g in plain_graph.groups] != [g.size for g in graph.groups]:
        raise RuntimeError("The channel graph changed while the gates were folded in; please report this model.")
    removed = _select(plain_graph, scores, closed, target, round_to, result.notes)
    result.resource_fraction = resource_after(plain_graph, removed, resource) / resource_after(plain_graph, [], resource)
    pruned = remove_channels(plain_graph, removed)
    record = run.finish("l0-channel", _phase_record(result), pruned)
    return _finetune_pruned(pruned, record, data, finetune_epochs, config, on_epoch, run)


def _phase_record(result: ChannelPruneResult) -> dict:
    """What the regularised phase decided, for the run's state."""
    return {
        "training": [training_record(run) for run in result.training], "trajectory": result.trajectory, "notes": result.notes,
        "resource_fraction": result.resource_fraction,
    }


def _finetune_pruned(pruned, record: dict, data, finetune_epochs: int, config, on_epoch, run: RunState) -> ChannelPruneResult:
    """The regularised phase's result (`record`, `pruned`), fine-tuned as the run's `finetune` phase."""
    training = [training_from_record(entry) for entry in record["training"]]
    if finetune_epochs > 0:
        training.append(train_phase(run, "finetune", pruned, data, finetune_epochs, config or TrainConfig(patience=None), on_epoch))
    return ChannelPruneResult(pruned, record["resource_fraction"], list(record["trajectory"]), training, list(record["notes"]))


def slimming_scores(graph: ChannelGraph) -> dict[int, float]:
    """|gamma| per channel class (the largest over the group's BatchNorms), raw so groups compare globally.

    Groups without a BatchNorm get their mean-normalised L1 score times the median |gamma|, so they rank
    among the others instead of never (or always) being pruned.
    """
    scores: dict[int, float] = {}
    for call, outputs in zip(graph.trace.calls, graph.call_outputs):
        layer = call.layer
        if isinstance(layer, keras.layers.BatchNormalization) and layer.scale and outputs:
            gamma = np.abs(keras.ops.convert_to_numpy(layer.gamma))
            for class_id, value in zip(outputs[0].tolist(), gamma.tolist()):
                scores[class_id] = max(scores.get(class_id, 0.0), value)
    median = float(np.median(list(scores.values()))) if scores else 1.0
    for class_id, value in weight_norm_scores(graph, order=1).items():
        scores.setdefault(class_id, value * median)
    return scores


def slimming_prune(
    model: keras.Model,
    data: SegmentationDataset,
    target: str = "flops=0.25",
    epochs: int = 15,
    strength: float = 1e-4,
    finetune_epochs: int = 20,
    round_to: int = 8,
    ignore: Sequence[str] = (),
    config: TrainConfig | None = None,
    on_epoch: EpochReporter | None = None,
    run: RunState | None = None,
    image_size: tuple[int, int] = COST_INPUT_SIZE,
) -> ChannelPruneResult:
    """Network slimming: fine-tune with `strength * sum|gamma|`, remove the smallest-|gamma| channels to `target`
    (measured at `image_size`, (height, width)).

    Example:
        >>> result = slimming_prune(model, data, target="flops=0.25")
    """
    if strength <= 0:
        raise ValueError(f"The slimming strength must be > 0, got {strength}.")
    resource, _ = parse_target(target)
    run = run or RunState(None, {})
    record = run.phase("slimming")
    if record is not None:
        return _finetune_pruned(run.model("slimming"), record, data, finetune_epochs, config, on_epoch, run)
    working = copy_model(model)
    gammas = [layer.gamma for _, layer in leaf_layers(working) if isinstance(layer, keras.layers.BatchNormalization) and layer.scale]
    if not gammas:
        raise ValueError(f"Model {model.name!r} has no BatchNormalization with a scale; network slimming needs one.")
    for gamma in gammas:
        gamma.regularizer = keras.regularizers.L1(strength)
    result = ChannelPruneResult(working, 1.0)
    all_gammas = lambda: np.concatenate([np.abs(keras.ops.convert_to_numpy(g)) for g in gammas])  # noqa: E731
    try:
        training = train_phase_with_trajectory(
            working, data, epochs, config, lambda: float(np.mean(all_gammas() < 1e-2)), result.trajectory, on_epoch, run=run, phase="slimming"
        )
    finally:
        for gamma in gammas:
            gamma.regularizer = None
    result.training.append(training)
    graph = build_channel_graph(working, ignore, input_shape=image_size)
    scores = slimming_scores(graph)
    strategy = ratio_for_target(graph, scores, target, round_to, lambda r: GlobalRanking(r, normalize=False))
    removed = strategy.select(graph, scores, round_to)
    result.resource_fraction = resource_after(graph, removed, resource) / resource_after(graph, [], resource)
    pruned = remove_channels(graph, removed)
    record = run.finish("slimming", _phase_record(result), pruned)
    return _finetune_pruned(pruned, record, data, finetune_epochs, config, on_epoch, run)
