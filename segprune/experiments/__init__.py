"""Experiments: the sweep runner (prune, fine-tune, export, time, resume) over methods and budgets."""

from segprune.experiments.sweep import SWEEP_METHODS, SweepConfig, run_sweep

__all__ = ["SWEEP_METHODS", "SweepConfig", "run_sweep"]
