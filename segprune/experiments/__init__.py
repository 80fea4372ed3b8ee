"""Experiments: the sweep runner (prune, fine-tune, export, time, resume) over methods and budgets."""

from segprune.experiments.instances import InstanceSweepConfig, instance_data, missing_mask_rcnn_note, run_instance_sweep
from segprune.experiments.sweep import SWEEP_METHODS, SweepConfig, run_sweep

__all__ = ["SWEEP_METHODS", "InstanceSweepConfig", "SweepConfig", "instance_data", "missing_mask_rcnn_note", "run_instance_sweep", "run_sweep"]
