"""Hard-concrete gates (Louizos, Welling and Kingma, "Learning Sparse Neural Networks through L0
Regularization", ICLR 2018), written on `keras.ops`.

A gate z in [0, 1] is a stretched and clipped binary-concrete sample driven by a learnt log-alpha. Its
probability of being non-zero has a closed form, so the expected number of open gates (the L0 norm) is a
differentiable penalty. At inference the gate is deterministic and exactly 0 or 1 once |log-alpha| > ~2.4.
"""

from __future__ import annotations

import math

from keras import ops
from keras import random as keras_random

TEMPERATURE = 2.0 / 3.0  # beta in the paper
STRETCH = (-0.1, 1.1)  # (gamma, zeta): the interval the concrete sample is stretched to before clipping


def sample(log_alpha, seed, temperature: float = TEMPERATURE):
    """A training-time gate sample; gradients flow to `log_alpha` through the reparametrisation."""
    low, high = STRETCH
    noise = keras_random.uniform(ops.shape(log_alpha), minval=1e-6, maxval=1.0 - 1e-6, seed=seed)
    concrete = ops.sigmoid((ops.log(noise) - ops.log(1.0 - noise) + log_alpha) / temperature)
    return ops.clip(concrete * (high - low) + low, 0.0, 1.0)


def deterministic(log_alpha):
    """The inference-time gate: the stretched sigmoid of log-alpha, clipped to [0, 1]."""
    low, high = STRETCH
    return ops.clip(ops.sigmoid(log_alpha) * (high - low) + low, 0.0, 1.0)


def probability_open(log_alpha, temperature: float = TEMPERATURE):
    """P(z != 0): the expected L0 norm contributed by each gate."""
    low, high = STRETCH
    return ops.sigmoid(log_alpha - temperature * math.log(-low / high))
