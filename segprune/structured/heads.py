"""Pruning a Mask R-CNN's RoI heads, which run once per region rather than once per image.

End to end the heads cost more than the trunk: the box head runs on every proposal (300 per image by default)
and the mask head on every detection, so on the nuclei tiles they take about 560 MMACs per tile where the trunk
takes 158, and pruning the trunk alone bought 1.06-1.09x on the whole exported detector (trunk and heads halved:
1.83-1.90x, `benchmarks/mask_rcnn_nuclei.py`). Each head is a plain functional model; it is narrowed like any
other by one criterion and a uniform ratio (its input, the pyramid's channels, and its outputs, the classes, stay).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from segprune.graph.groups import build_channel_graph
from segprune.models.loading import copy_model
from segprune.models.mask_rcnn import MaskRCNN
from segprune.structured.oneshot import prune_graph
from segprune.structured.summary import PruningSummary, pruning_summary


@dataclass(frozen=True)
class HeadsSummary:
    """The RoI heads before and after pruning, each priced for one region at the size it pools.

    Attributes:
        ratio: The share of channels removed from every prunable group of each head.
        importance: The criterion that ranked them.
        box: The box head at `pool_size` x `pool_size` (it runs on every proposal).
        mask: The mask head at `mask_pool_size` (it runs on every detection).
    """

    ratio: float
    importance: str
    box: PruningSummary
    mask: PruningSummary

    def lines(self) -> list[str]:
        """One line per head: MACs per region before -> after (their ratio), and parameters.

        Example:
            >>> print("\\n".join(summary.lines()))
            box head: 0.273 -> 0.131 MMACs per RoI (0.480); parameters 272,466 -> 131,330
            mask head: 1.410 -> 0.438 MMACs per RoI (0.311); parameters 129,282 -> 40,018
        """
        return [
            f"{name}: {head.macs_before / 1e6:.3f} -> {head.macs_after / 1e6:.3f} MMACs per RoI ({head.macs_ratio:.3f}); "
            f"parameters {head.params_before:,} -> {head.params_after:,}"
            for name, head in (("box head", self.box), ("mask head", self.mask))
        ]


def prune_heads(model: MaskRCNN, ratio: float, importance: str = "l1", round_to: int = 8) -> tuple[MaskRCNN, HeadsSummary]:
    """A copy of `model` whose box and mask heads each lost `ratio` of every prunable group's channels; `model` is untouched.

    Args:
        model: The detector.
        ratio: Share of channels to remove from every prunable group of each head, in [0, 1): the box head's dense
            layers, the mask head's convolutions and its upsampling.
        importance: A criterion that needs no data (`"l1"`, `"l2"`, `"bn-scale"`, `"random"`).
        round_to: Every pruned group keeps a multiple of this many channels.

    Returns:
        The detector (its trunk copied) and the heads' cost per region before and after.

    Example:
        >>> smaller, summary = prune_heads(model, 0.5)
        >>> summary.mask.macs_ratio < 0.6
        True
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
        raise ValueError(f"The heads' ratio is the share of their channels to remove, a number in [0, 1) such as 0.5; got {ratio!r}.")
    config = model.config
    box, box_summary = _pruned_head(model.box_head, config.pool_size, ratio, importance, round_to)
    mask, mask_summary = _pruned_head(model.mask_head, config.mask_pool_size, ratio, importance, round_to)
    return MaskRCNN(config, copy_model(model.trunk), box, mask), HeadsSummary(float(ratio), importance, box_summary, mask_summary)


def _pruned_head(head: keras.Model, pool_size: int, ratio: float, importance: str, round_to: int) -> tuple[keras.Model, PruningSummary]:
    size = (pool_size, pool_size)
    graph = build_channel_graph(head, input_shape=size)
    pruned = prune_graph(graph, ratio=float(ratio), importance=importance, round_to=round_to)
    return pruned, pruning_summary(head, pruned, size, pinned=graph.pinned)
