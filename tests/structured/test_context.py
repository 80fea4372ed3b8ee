"""`RunContext`: what one `prune` call asked for, as every method reads it."""

import pytest

from segprune.structured.context import RunContext
from segprune.structured.selection import GlobalRanking


@pytest.mark.parametrize(
    ("family", "finetune_epochs", "trains", "keeps_state"),
    [("oneshot", 0, False, False), ("oneshot", 2, True, True), ("regularised", 0, True, True), ("search", 0, True, False), ("search", 3, True, True)],
)
def test_what_trains_and_what_keeps_a_run_state(family, finetune_epochs, trains, keeps_state):
    context = RunContext("m", family, finetune_epochs=finetune_epochs)
    assert (context.trains, context.keeps_state) == (trains, keeps_state)


def test_a_ratio_is_ranked_across_groups_only_with_global_ranking():
    assert RunContext("l1", "oneshot", ratio=0.5).selection() == 0.5
    ranked = RunContext("l1", "oneshot", ratio=0.5, settings={"global_ranking": True}).selection()
    assert isinstance(ranked, GlobalRanking) and ranked.ratio == 0.5
    per_layer = {"conv": 0.25}
    assert RunContext("l1", "oneshot", ratio=per_layer, settings={"global_ranking": True}).selection() is per_layer
    assert RunContext("l1", "oneshot", target="flops=0.5").selection() == 0.0


def test_settings_read_as_given_and_an_unknown_family_is_refused():
    context = RunContext("greedy", "search", settings={"threads": None, "iterations": 3})
    assert (context.setting("iterations", 10), context.setting("threads", 4), context.setting("workers", 1)) == (3, None, 1)
    with pytest.raises(ValueError, match="family must be one of"):
        RunContext("l1", "one-shot")
