"""The deterministic-kernels switch reports and restores its state under every backend."""

from segprune.backend.determinism import deterministic_kernels


def test_switching_on_is_reported_and_the_previous_state_restored():
    was_on = deterministic_kernels(True)
    try:
        assert deterministic_kernels(True) is True
    finally:
        deterministic_kernels(was_on)
