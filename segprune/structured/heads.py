"""Pruning a Mask R-CNN's RoI heads, which run once per region rather than once per image, and the pyramid they read.

End to end the heads cost more than the trunk: the box head runs on every proposal (300 per image by default)
and the mask head on every detection, so on the nuclei tiles they take about 560 MMACs per tile where the trunk
takes 158, and pruning the trunk alone bought 1.06-1.09x on the whole exported detector (trunk and heads halved:
1.83-1.90x, `benchmarks/mask_rcnn_nuclei.py`). What the heads read is pooled from the FPN's pyramid, channel by
channel: its width sets what RoIAlign moves for every proposal, the heads' first layers, and the trunk's last
convolutions (each level's 3x3 convolution and the shared RPN convolution that reads every level). The trunk's own
graph keeps the pyramid whole (its levels are outputs), so the heads step prunes it when asked: one channel graph
of the trunk and both heads joined where they read the pyramid (`pyramid_coupling`), narrowed in the heads' groups
by one ratio and in the pyramid's by another, under one criterion (the heads' outputs, the classes, stay); the trunk
is pruned after. The pyramid is a ratio of its own because it costs accuracy where the heads did not: on the nuclei
(`benchmarks/mask_rcnn_nuclei.py`, 4 test tiles) halving it with the heads and trunk lost 8-11 points of AP50 over
three fine-tunes (paired intervals above 3 points), while the heads alone lost no measurable AP50.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import keras

from segprune.graph.groups import ChannelGraph, build_channel_graph
from segprune.models.loading import copy_model
from segprune.models.mask_rcnn import MaskRCNN
from segprune.models.mask_rcnn.networks import POOLED_NAMES, pyramid_coupling
from segprune.structured.oneshot import prune_graph
from segprune.structured.selection import LayerRatios
from segprune.structured.summary import PruningSummary, pruning_summary


@dataclass(frozen=True)
class HeadsSummary:
    """The RoI heads before and after pruning, each priced for one region at the size it pools, and the pyramid's width.

    Attributes:
        ratio: The share of channels removed from every prunable group of each head (None: the heads kept whole).
        pyramid_ratio: The share removed from the pyramid (None: kept whole, asked or not).
        importance: The criterion that ranked them.
        box: The box head at `pool_size` x `pool_size` (it runs on every proposal).
        mask: The mask head at `mask_pool_size` (it runs on every detection).
        pyramid_channels: Channels of every pyramid level (P2-P4) before and after: what RoIAlign pools for each
            region and the shared RPN convolution reads (the trunk's MACs are in `PruneResult.summary`).
    """

    ratio: float | None
    pyramid_ratio: float | None
    importance: str
    box: PruningSummary
    mask: PruningSummary
    pyramid_channels: tuple[int, int]

    def lines(self) -> list[str]:
        """One line per head: MACs per region before -> after (their ratio), and parameters; then the pyramid's width.

        Example:
            >>> print("\\n".join(summary.lines()))
            box head: 0.273 -> 0.131 MMACs per RoI (0.480); parameters 272,466 -> 131,330
            mask head: 1.410 -> 0.438 MMACs per RoI (0.311); parameters 129,282 -> 40,018
            pyramid P2-P4 (pooled for every RoI, read by the RPN): 64 -> 32 channels
        """
        before, after = self.pyramid_channels
        return [
            *(
                f"{name}: {head.macs_before / 1e6:.3f} -> {head.macs_after / 1e6:.3f} MMACs per RoI ({head.macs_ratio:.3f}); "
                f"parameters {head.params_before:,} -> {head.params_after:,}"
                for name, head in (("box head", self.box), ("mask head", self.mask))
            ),
            f"pyramid P2-P4 (pooled for every RoI, read by the RPN): {before} -> {after} channels",
        ]


def prune_heads(
    model: MaskRCNN, ratio: float | None, importance: str = "l1", round_to: int = 8, ignore: Iterable[str] = (), pyramid: float | None = None
) -> tuple[MaskRCNN, HeadsSummary]:
    """A copy of `model` whose box and mask heads each lost `ratio` of every prunable group's channels, and whose pyramid
    lost `pyramid` of its channels everywhere they are read; `model` is untouched.

    Args:
        model: The detector.
        ratio: Share of channels to remove, in [0, 1), from every prunable group of each head (the box head's dense
            layers, the mask head's convolutions and its upsampling); None keeps the heads whole.
        pyramid: Share of the pyramid's channels to remove, in [0, 1) (the output channels of every level's
            convolution, the shared RPN convolution's input channels, both heads' first layers' inputs); None keeps it.
        importance: A criterion that needs no data (`"l1"`, `"l2"`, `"bn-scale"`, `"random"`); a pyramid channel is
            scored over every kernel that writes or reads it, the heads' included.
        round_to: Every pruned group keeps a multiple of this many channels.
        ignore: Layer names whose channels stay (`prune`'s `ignore`): ignoring a layer that writes or reads the
            pyramid (such as `rpn_conv`) keeps the pyramid whole.

    Returns:
        The detector (the trunk narrowed where it writes and reads the pyramid, nowhere else) and the heads' cost per
        region before and after.

    Example:
        >>> smaller, summary = prune_heads(model, 0.5, pyramid=0.5)
        >>> summary.mask.macs_ratio < 0.6, summary.pyramid_channels
        (True, (64, 32))
    """
    for name, value in (("heads", ratio), ("pyramid", pyramid)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0):
            raise ValueError(f"The {name} ratio is the share of channels to remove, a number in [0, 1) such as 0.5; got {value!r}.")
    config = model.config
    networks = (model.trunk, model.box_head, model.mask_head)
    side = config.size_multiple  # the smallest image the trunk takes: the graph is traced, its size is not priced here
    graph = build_channel_graph(pyramid_coupling(*networks, config), ignore, input_shape=(side, side))
    heads, pyramid_group = _narrowed_producers(graph, model)
    ratios = {**{name: float(ratio) for name in heads if ratio}, **{name: float(pyramid) for name in pyramid_group if pyramid}}
    coupled = prune_graph(graph, ratio=LayerRatios(ratios), importance=importance, round_to=round_to)
    trunk, box, mask = (copy_model(coupled.get_layer(network.name)) for network in networks)
    widths = (int(model.trunk.outputs[0].shape[-1]), int(trunk.outputs[0].shape[-1]))  # P2, whose width every level shares
    summary = HeadsSummary(
        None if ratio is None else float(ratio),
        None if pyramid is None or widths[0] == widths[1] else float(pyramid),  # None too where ignore= kept it whole
        _ranked_by(importance, model),
        _head_summary(model.box_head, box, config.pool_size),
        _head_summary(model.mask_head, mask, config.mask_pool_size),
        widths,
    )
    return MaskRCNN(config, trunk, box, mask), summary


def _narrowed_producers(graph: ChannelGraph, model: MaskRCNN) -> tuple[list[str], list[str]]:
    """One producing layer per group the heads step may narrow: every group made inside a head, and the pyramid the heads
    pool. Groups kept whole (ignored, or the classes the heads output) are left out."""
    head_layers = {layer.name for head in (model.box_head, model.mask_head) for layer in head.layers}
    pyramid = graph.group_of_layer(POOLED_NAMES[0])
    heads = [group for group in graph.groups if group is not pyramid and set(group.producers) <= head_layers]
    return [group.producers[0] for group in heads if group.num_prunable], [pyramid.producers[0]] if pyramid.num_prunable else []


def _ranked_by(importance: str, model: MaskRCNN) -> str:
    """The criterion as it ranked: bn-scale falls back to the l1 norm for a group without a BatchNorm, as the heads are."""
    if importance == "bn-scale" and not any(isinstance(layer, keras.layers.BatchNormalization) for head in (model.box_head, model.mask_head) for layer in head.layers):
        return "l1 (bn-scale without a BatchNorm in the heads)"
    return importance


def _head_summary(head: keras.Model, pruned: keras.Model, pool_size: int) -> PruningSummary:
    return pruning_summary(head, pruned, (pool_size, pool_size))
