"""Accuracy versus speed: the sweep over methods and budgets, its plots and its HTML report."""

from segprune.report.html import build_report
from segprune.report.sweep import SWEEP_METHODS, SweepConfig, balance_point, run_sweep

__all__ = ["SWEEP_METHODS", "SweepConfig", "balance_point", "build_report", "run_sweep"]
