"""The before/after table: one row per layer, and totals that are the models' own MACs and parameters."""

from segprune.cost import flops
from segprune.models.mask_rcnn import mask_rcnn
from segprune.structured.oneshot import prune_channels
from segprune.structured.summary import pruning_summary
from tests.fixtures import TINY_MASK_RCNN


def test_a_layer_shared_across_pyramid_levels_is_one_row_with_the_macs_of_every_call():
    trunk = mask_rcnn(**TINY_MASK_RCNN).trunk  # its RPN head runs once per pyramid level
    pruned = prune_channels(trunk, ratio=0.5, round_to=1)
    summary = pruning_summary(trunk, pruned, (64, 64))
    names = [row.name for row in summary.layers]
    assert len(names) == len(set(names)) and "rpn_conv" in names
    calls = [cost for cost in flops(pruned, (64, 64)).layers if cost.name == "rpn_conv"]
    assert len(calls) == 3
    assert next(row for row in summary.layers if row.name == "rpn_conv").macs_after == sum(cost.macs for cost in calls)
    assert summary.macs_after == flops(pruned, (64, 64)).macs == sum(row.macs_after for row in summary.layers)
    assert summary.params_after == pruned.count_params()
