"""segprune: make Keras 3 segmentation networks smaller and faster by pruning them.

The public API is loaded on first use, so that `import segprune` (and `segprune --help`) does not start
TensorFlow: `segprune.prune` imports the pruning machinery when it is first called for.
"""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: its start-up chatter hides our output

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "CostReport": "segprune.cost",
    "DistillConfig": "segprune.training",
    "Evaluation": "segprune.metrics",
    "PruneResult": "segprune.api",
    "PruningSummary": "segprune.structured.summary",
    "SparsifyResult": "segprune.api",
    "TrainConfig": "segprune.training",
    "TrainResult": "segprune.training",
    "evaluate": "segprune.metrics",
    "flops": "segprune.cost",
    "load_data": "segprune.data",
    "load_model": "segprune.models",
    "parse_target": "segprune.cost",
    "prune": "segprune.api",
    "prune_channels": "segprune.structured.oneshot",
    "pruning_summary": "segprune.structured.summary",
    "save_model": "segprune._io",
    "sparsify": "segprune.api",
    "train": "segprune.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'segprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
