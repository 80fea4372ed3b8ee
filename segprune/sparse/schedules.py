"""Pruning schedules: when the masks are recomputed, and to what sparsity.

The semantics follow TensorFlow Model Optimization's schedules, which users of magnitude pruning know: masks
are updated at steps `begin_step, begin_step + frequency, ...` up to `end_step` (`end_step=-1` never stops).
One deliberate difference: `end_step` itself is always an update step, so the final sparsity is reached
exactly there even when `end_step - begin_step` is not a multiple of `frequency`.
"""

from __future__ import annotations

from dataclasses import dataclass


def _check_steps(begin_step: int, end_step: int, frequency: int) -> None:
    if begin_step < 0:
        raise ValueError(f"begin_step must be >= 0, got {begin_step}.")
    if end_step != -1 and end_step < begin_step:
        raise ValueError(f"end_step ({end_step}) must be >= begin_step ({begin_step}), or -1 to prune forever.")
    if frequency < 1:
        raise ValueError(f"frequency must be >= 1, got {frequency}.")


def _check_sparsity(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}.")


def _is_update_step(step: int, begin_step: int, end_step: int, frequency: int) -> bool:
    if step < begin_step or (end_step != -1 and step > end_step):
        return False
    return step == end_step or (step - begin_step) % frequency == 0


@dataclass(frozen=True)
class ConstantSparsity:
    """The same sparsity at every update step between `begin_step` and `end_step`.

    Example:
        >>> schedule = ConstantSparsity(0.9, begin_step=0, frequency=100)
        >>> schedule.update(200)
        (True, 0.9)
    """

    target_sparsity: float
    begin_step: int = 0
    end_step: int = -1
    frequency: int = 100

    def __post_init__(self) -> None:
        _check_sparsity("target_sparsity", self.target_sparsity)
        _check_steps(self.begin_step, self.end_step, self.frequency)

    @property
    def final_sparsity(self) -> float:
        return self.target_sparsity

    def update(self, step: int) -> tuple[bool, float]:
        """(whether the masks are recomputed at `step`, the sparsity they get)."""
        return _is_update_step(step, self.begin_step, self.end_step, self.frequency), self.target_sparsity


@dataclass(frozen=True)
class PolynomialDecay:
    """Sparsity rises from `initial_sparsity` to `final_sparsity` along a polynomial of degree `power`.

    `s(step) = final + (initial - final) * (1 - p) ** power` with `p` the share of [begin_step, end_step]
    done; the rise is fast at first and slow near the end, so the network adapts to the last cuts.

    Example:
        >>> schedule = PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000, frequency=100)
        >>> schedule.update(1000)
        (True, 0.9)
    """

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    power: float = 3.0
    frequency: int = 100

    def __post_init__(self) -> None:
        _check_sparsity("initial_sparsity", self.initial_sparsity)
        _check_sparsity("final_sparsity", self.final_sparsity)
        if self.end_step == -1:
            raise ValueError("PolynomialDecay needs a finite end_step (the step at which final_sparsity is reached).")
        _check_steps(self.begin_step, self.end_step, self.frequency)
        if self.power <= 0:
            raise ValueError(f"power must be > 0, got {self.power}.")

    def sparsity_at(self, step: int) -> float:
        span = max(1, self.end_step - self.begin_step)
        done = min(1.0, max(0.0, (step - self.begin_step) / span))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - done) ** self.power

    def update(self, step: int) -> tuple[bool, float]:
        """(whether the masks are recomputed at `step`, the sparsity they get)."""
        return _is_update_step(step, self.begin_step, self.end_step, self.frequency), self.sparsity_at(step)


Schedule = ConstantSparsity | PolynomialDecay


def make_schedule(name: str, sparsity: float, total_steps: int, ramp_share: float = 0.6) -> Schedule:
    """The schedule the command line means by `--schedule NAME` for a run of `total_steps` optimizer steps.

    `polynomial` ramps from 0 to `sparsity` over the first `ramp_share` of the run and holds it after, so the
    network recovers at the final sparsity; `constant` prunes to `sparsity` at the first step.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
    frequency = max(1, total_steps // 40)
    if name == "constant":
        return ConstantSparsity(sparsity, begin_step=0, end_step=-1, frequency=frequency)
    if name == "polynomial":
        end_step = max(1, int(total_steps * ramp_share))
        return PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end_step, frequency=frequency)
    raise ValueError(f"Unknown schedule {name!r}; choose 'polynomial' or 'constant'.")
