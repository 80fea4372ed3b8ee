"""`optimize`: one call from a trained model to a deployable, timed file with a model card (`run.py`), the goal and
ladder it walks (`plan.py`), how each model is deployed, scored and timed (`deploy.py`) and the card (`card.py`)."""

from segprune.experiments.optimize.plan import LADDER, parse_goal
from segprune.experiments.optimize.run import LOG_NAME, OptimizeResult, OptimizeSettings, check_out_dir, optimize

__all__ = ["LADDER", "LOG_NAME", "OptimizeResult", "OptimizeSettings", "check_out_dir", "optimize", "parse_goal"]
