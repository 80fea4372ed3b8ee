"""Schedules: TFMOT's update-step semantics, and the final sparsity exactly at end_step."""

import pytest

from segprune.sparse.schedules import ConstantSparsity, PolynomialDecay, make_schedule


def test_polynomial_reaches_final_sparsity_exactly_at_end_step_even_off_the_frequency_grid():
    schedule = PolynomialDecay(0.0, 0.9, begin_step=10, end_step=105, frequency=20)
    assert schedule.update(105) == (True, 0.9)
    assert schedule.update(106)[0] is False
    assert schedule.sparsity_at(1000) == 0.9


def test_polynomial_updates_on_the_frequency_grid_from_begin_step():
    schedule = PolynomialDecay(0.2, 0.8, begin_step=10, end_step=110, frequency=25, power=3)
    due = [step for step in range(0, 130) if schedule.update(step)[0]]
    assert due == [10, 35, 60, 85, 110]
    assert schedule.update(10)[1] == pytest.approx(0.2)
    assert schedule.update(60)[1] == pytest.approx(0.8 + (0.2 - 0.8) * 0.5**3)
    sparsities = [schedule.update(step)[1] for step in due]
    assert sparsities == sorted(sparsities)


def test_constant_prunes_forever_with_end_step_minus_one():
    schedule = ConstantSparsity(0.5, begin_step=5, frequency=10)
    assert [step for step in range(0, 40) if schedule.update(step)[0]] == [5, 15, 25, 35]
    assert schedule.update(10**6 + 5) == (True, 0.5)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: PolynomialDecay(0.0, 1.0, 0, 10), "final_sparsity"),
        (lambda: PolynomialDecay(0.0, 0.5, 10, 5), "end_step"),
        (lambda: PolynomialDecay(0.0, 0.5, 0, -1), "finite end_step"),
        (lambda: ConstantSparsity(0.5, frequency=0), "frequency"),
        (lambda: make_schedule("cubic", 0.5, 100), "polynomial"),
    ],
)
def test_bad_schedules_are_explained(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_command_line_schedules_ramp_then_hold():
    schedule = make_schedule("polynomial", 0.9, total_steps=100)
    assert schedule.end_step == 60 and schedule.update(60) == (True, 0.9)
    assert make_schedule("constant", 0.9, 100).update(0) == (True, 0.9)
