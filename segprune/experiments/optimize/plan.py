"""What `optimize` aims at and which candidate it tries next: the goal, the method and the ladder of MACs budgets.

Policy only (no Keras, no runtime): the runner measures, this module decides. The ladder is halvings of the
dense MACs, 1/2 down to 1/32. The first rung is predicted from the dense model's own measurements on the target
runtime (its fastest deployment within the tolerance, int8 included, over dense ONNX Runtime fp32), assuming
latency falls in proportion to MACs; every later rung is predicted from the nearest measured candidate. A
candidate whose loss interval leaves the tolerance rules out every more aggressive rung, one that stays within
it but misses the goal rules out every gentler rung, so the ladder is walked at most once and each step says why;
between a rung too slow and the next one too lossy, the budget halfway (geometrically) is tried once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LADDER = (0.5, 0.25, 0.125, 0.0625, 0.03125)  # fractions of the dense MACs, gentlest first
GOALS = ("speedup", "latency")
BISECT_RATIO = 1.5  # a rung too slow and one too lossy this far apart (or more) get the budget halfway between them tried
DEFAULT_GOAL = "speedup=8"

# The method `optimize` prunes with unless told, and why (docs/EVIDENCE.md, brain task, distillation on).
DEFAULT_METHOD = "l1"
METHOD_REASONS = {
    "l1": "one-shot L1 then a distilled fine-tune: it spends no time searching; on the brain task a greedy search run to its end "
    "lost far less (1.3 [0.4, 2.3] Dice points at 1/2 of the MACs against L1's 10.6 [9.2, 11.5], docs/EVIDENCE.md): "
    "try --method greedy when the minutes are there",
    "greedy": "asked for (--method greedy): channel widths searched on the target runtime's own latency table, then a distilled fine-tune",
    "random-search": "asked for (--method random-search): channel widths searched on the target runtime's own latency table, then a distilled fine-tune",
}


@dataclass(frozen=True)
class Goal:
    """`speedup=S`: S times faster than the dense model on ONNX Runtime fp32; `latency=MS`: at most MS ms on the target runtime."""

    kind: str
    value: float

    def target_ms(self, reference_ms: float) -> float:
        """The latency that meets the goal, given the dense ONNX Runtime fp32 latency."""
        return reference_ms / self.value if self.kind == "speedup" else self.value

    def met(self, speedup: float, latency_ms: float) -> bool:
        """Whether a file meets the goal: by its speed-up over dense ONNX Runtime fp32 timed in the same run (a ratio,
        which a machine busier in one step than in another does not move), or by its own latency."""
        return speedup >= self.value if self.kind == "speedup" else latency_ms <= self.value

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


def parse_goal(text: str) -> Goal:
    """`"speedup=8"` -> Goal("speedup", 8.0); `"latency=2.5"` -> Goal("latency", 2.5) (milliseconds).

    Example:
        >>> parse_goal("speedup=8").target_ms(16.0)
        2.0
    """
    kind, _, value = str(text).partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if kind not in GOALS or not number > 0 or math.isinf(number):
        raise ValueError(f"--target takes speedup=S (times faster than dense ONNX Runtime fp32, e.g. speedup=8) or latency=MS "
                         f"(milliseconds on the target runtime, e.g. latency=2.5); got {text!r}.")
    return Goal(kind, number)


def check_method(method: str) -> str:
    """The method's reason; refuses a method `optimize` does not run."""
    if method not in METHOD_REASONS:
        raise ValueError(f"optimize prunes with {list(METHOD_REASONS)}; got method {method!r}.")
    return METHOD_REASONS[method]


def check_ladder(budgets) -> tuple[float, ...]:
    """The budgets given (fractions of the dense MACs in (0, 1)), gentlest first."""
    budgets = tuple(sorted({float(b) for b in budgets}, reverse=True))
    if not budgets or any(not 0 < b < 1 for b in budgets):
        raise ValueError(f"Budgets are fractions of the dense MACs in (0, 1), e.g. 0.5,0.25,0.125; got {list(budgets)}.")
    return budgets


@dataclass(frozen=True)
class Outcome:
    """What one finished step showed: its budget (1.0 for dense), whether its best deployment stays within the
    tolerance, the speed-up of its fastest deployment within the tolerance (else of its fastest) over dense ONNX
    Runtime fp32, and whether that meets the goal."""

    budget: float
    within: bool
    speedup: float
    met: bool
    unreachable: bool = False  # pruning cannot get this far (round_to): every more aggressive rung is out too
    reachable: float | None = None  # for an unreachable rung: the fraction pruning as far as round_to allows keeps


@dataclass(frozen=True)
class Step:
    """The next budget to try and why, or `budget=None` with why the ladder stops."""

    budget: float | None
    reason: str


def next_step(ladder: tuple[float, ...], outcomes: list[Outcome], needed: float) -> Step:
    """The next rung of `ladder` given the finished `outcomes` (dense first, budget 1.0) and the speed-up `needed`.

    Example:
        >>> next_step(LADDER, [Outcome(1.0, True, 2.0, False)], needed=8.0).budget  # 2x at full MACs: 1/4 predicts 8x
        0.25
    """
    met = [o for o in outcomes if o.within and o.met]
    if met:  # the dense model too: when its int8 file meets the goal there is nothing to prune
        return Step(None, f"the goal is met {'by the dense model' if met[0].budget >= 1.0 else f'at {fraction(met[0].budget)}'} within the tolerance")
    pruned = [o for o in outcomes if o.budget < 1.0]
    failing = [o for o in pruned if not o.within]
    slow = [o.budget for o in pruned if o.within]
    low, high = max((o.budget for o in failing), default=0.0), min(slow, default=1.0)
    tried = {o.budget for o in outcomes}
    open_rungs = [b for b in ladder if low < b < high and b not in tried]
    unreachable = any(o.unreachable for o in failing if o.budget == low)
    floor = next((o.reachable for o in failing if o.budget == low and o.unreachable and o.reachable), None)
    if not open_rungs and unreachable and floor is not None:  # as far as round_to allows, when that is still short of the slow rung
        budget = math.ceil((floor + 5e-4) * 1000) / 1000
        if budget < high and budget not in tried:
            return Step(budget, f"{fraction(low)} cannot be reached (round_to keeps at least {floor:.3f}): as far as round_to allows")
    if not open_rungs and failing and slow and high / low > BISECT_RATIO and not unreachable:
        middle = round(math.sqrt(low * high), 4)  # between a rung too slow and one too lossy: halfway, geometrically
        if middle not in tried:
            return Step(middle, f"{fraction(high)} stays within the tolerance but misses the goal and {fraction(low)} leaves it: halfway between them")
    if not open_rungs:
        beyond = "cannot be reached (every group pruned as far as round_to allows)" if unreachable else "leaves the tolerance"
        if failing and slow:
            return Step(None, f"{fraction(high)} stays within the tolerance but misses the goal, and {fraction(low)} {beyond}: no rung between them")
        if failing:
            return Step(None, f"no rung is left to try: {fraction(low)} {beyond}, and so does every rung tried")
        return Step(None, f"the most aggressive rung {fraction(min(ladder))} stays within the tolerance but misses the goal")
    measured = [o for o in outcomes if o.speedup > 0]

    def predicted(budget: float) -> float:
        nearest = min(measured, key=lambda o: abs(math.log(o.budget / budget)))
        return nearest.speedup * nearest.budget / budget

    meeting = [b for b in open_rungs if predicted(b) >= needed]
    if meeting:
        budget = max(meeting)
        why = f"the gentlest rung predicted to meet the goal ({predicted(budget):.1f}x, latency in proportion to MACs from the nearest measured step)"
    elif failing and not slow:
        budget = min(open_rungs)  # nothing within the tolerance yet: back off one rung towards dense
        why = f"{fraction(low)} {'cannot be reached' if any(o.unreachable for o in failing) else 'left the tolerance'}: the next gentler rung"
    else:
        budget = min(open_rungs)
        why = f"no rung is predicted to meet the goal (at most {predicted(budget):.1f}x): the most aggressive rung left"
    return Step(budget, why)


def open_rungs(ladder: tuple[float, ...], outcomes: list[Outcome], needed: float) -> list[float]:
    """The rungs the ladder may still try, for the time left: `next_step` until it stops, on the assumption that
    every rung tried stays within the tolerance and misses the goal (the walk to the most aggressive rung).

    Example:
        >>> len(open_rungs(LADDER, [Outcome(1.0, True, 1.0, False)], needed=8.0))
        3
    """
    outcomes, rungs = list(outcomes), []
    while (step := next_step(ladder, outcomes, needed)).budget is not None:
        rungs.append(step.budget)
        outcomes.append(Outcome(step.budget, True, 0.0, False))
    return rungs


def fraction(budget: float) -> str:
    """0.25 -> "1/4"; 0.3 -> "0.3"; 1.0 -> "dense"."""
    if budget >= 1.0:
        return "dense"
    inverse = 1.0 / budget
    return f"1/{inverse:.0f}" if abs(inverse - round(inverse)) < 1e-9 else f"{budget:g}"
