"""Checks on a model's weights before any work: one NaN or infinity in a kernel makes every result garbage."""

from __future__ import annotations

import keras
import numpy as np

_SHOWN = 3  # weights named in the message; the count says how many more there are


class NonFiniteWeightsError(ValueError):
    """A model holds NaN or infinite weights: pruning, fine-tuning or exporting it would give garbage."""


def check_finite_weights(model: keras.Model, source: str | None = None) -> None:
    """Raises `NonFiniteWeightsError`, naming each layer and weight, if any weight of `model` is NaN or infinite.

    Example:
        >>> check_finite_weights(segprune.load_model("unet.keras"), source="unet.keras")
    """
    found = []
    for variable in model.weights:
        values = _float_values(variable)
        if values is None or np.isfinite(values).all():
            continue
        layer, _, weight = variable.path.rpartition("/")
        nan, infinite = int(np.isnan(values).sum()), int(np.isinf(values).sum())
        kinds = " and ".join(text for count, text in ((nan, f"{nan:,} NaN"), (infinite, f"{infinite:,} infinite")) if count)
        found.append(f"layer {layer or model.name!r} weight {weight!r} ({kinds} of {values.size:,} values)")
    if not found:
        return
    more = f" and {len(found) - _SHOWN} more weight(s)" if len(found) > _SHOWN else ""
    raise NonFiniteWeightsError(
        f"{repr(source) if source else 'The model ' + repr(model.name)} has non-finite weights: {'; '.join(found[:_SHOWN])}{more}. Every result computed "
        "from it would be garbage, so segprune stops before any work; use the checkpoint from before the weights diverged, "
        "or train again with a lower learning rate."
    )


def _float_values(variable) -> np.ndarray | None:
    """A floating-point weight's values as NumPy floats (bfloat16 as float32), or None for integer and boolean weights.

    NumPy does not count bfloat16 (an `ml_dtypes` type) as a float kind, so it is recognised by Keras's dtype name.
    """
    if "float" not in keras.backend.standardize_dtype(variable.dtype):
        return None
    values = np.asarray(keras.ops.convert_to_numpy(variable))
    return values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float32)
