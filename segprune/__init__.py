"""segprune: make Keras 3 segmentation networks smaller and faster by pruning them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides our own output

from segprune.graph._keras_internals import allow_dynamic_resize  # noqa: E402

allow_dynamic_resize()

from segprune._io import save_model  # noqa: E402
from segprune.cost import CostReport, flops  # noqa: E402
from segprune.data import load_data  # noqa: E402
from segprune.metrics import Evaluation, evaluate  # noqa: E402
from segprune.models import load_model  # noqa: E402
from segprune.structured.oneshot import prune_channels  # noqa: E402
from segprune.structured.summary import PruningSummary, pruning_summary  # noqa: E402
from segprune.training import TrainConfig, TrainResult, train  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "CostReport",
    "Evaluation",
    "PruningSummary",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "flops",
    "load_data",
    "load_model",
    "prune_channels",
    "pruning_summary",
    "save_model",
    "train",
]
