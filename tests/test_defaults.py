"""The Python API and the command line share their defaults (segprune.defaults): the same call does the same thing."""

import argparse
import inspect

import segprune
from segprune import defaults
from segprune.cli import prune, sparsify, sweep, train
from segprune.experiments import SweepConfig
from segprune.training import DistillConfig, TrainConfig


def _parser(command) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    command.configure(parser)
    return parser


def _defaults(command, *arguments) -> argparse.Namespace:
    return _parser(command).parse_args(list(arguments))


def _signature(function) -> dict:
    return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()}


def test_prune_on_the_command_line_and_in_python_distils_rounds_and_fine_tunes_alike():
    parsed = _defaults(prune, "model.keras", "--target", "flops=0.5", "--out", "pruned.keras")
    api = _signature(segprune.prune)
    assert parsed.distill is api["distill"] is True, "distillation is on in both"
    assert (parsed.temperature, parsed.distill_weight) == (DistillConfig().temperature, DistillConfig().weight)
    assert parsed.round_to == api["round_to"] == defaults.ROUND_TO
    assert parsed.finetune_epochs is api["finetune_epochs"] is None, "both leave it to the method"
    assert parsed.seed == defaults.SEED
    options = {action.dest: action.help for action in _parser(prune)._actions}
    assert f"default {defaults.GREEDY_ITERATIONS}" in options["iterations"] and f"default {defaults.SEARCH_CANDIDATES}" in options["candidates"]
    assert f"default {defaults.CANDIDATE_STEPS}" in options["candidate_steps"]
    assert f"default {defaults.ONESHOT_FINETUNE_EPOCHS} for one-shot methods, {defaults.FINETUNE_EPOCHS} for the others" in options["finetune_epochs"]


def test_sparsify_sweep_and_training_read_the_same_defaults():
    assert _defaults(sparsify, "model.keras", "--data", "nuclei", "--sparsity", "0.5", "--out", "o.keras").epochs == _signature(segprune.sparsify)["epochs"]
    parsed = _defaults(sweep, "--model", "model.keras", "--out", "runs")
    config = SweepConfig()
    assert tuple(float(budget) for budget in parsed.budgets.split(",")) == config.budgets
    assert (parsed.finetune_epochs, parsed.tolerance) == (config.finetune_epochs, config.tolerance)
    assert parsed.distill and config.distill == DistillConfig(parsed.temperature, parsed.distill_weight), "a sweep distils by default in both"
    assert train._SEGMENTATION_DEFAULTS["learning_rate"] == TrainConfig().learning_rate == defaults.LEARNING_RATE
