"""The circuit breaker's states on a fake clock: no sleeping, every transition seen."""

from __future__ import annotations

import pytest

from staywire.proxy.breaker import Breaker, BreakerState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_failures_in_a_row_and_fails_fast() -> None:
    clock = Clock()
    b = Breaker("connect", failures=3, reset_after=5.0, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert b.state is BreakerState.CLOSED
    assert b.allow()
    b.success()  # a success in between: the count starts again
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state is BreakerState.OPEN
    clock.now += 4.9
    assert not b.allow() and b.state is BreakerState.OPEN


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = Clock()
    b = Breaker("subscribe", failures=1, reset_after=5.0, clock=clock)
    b.allow()
    b.failure()
    clock.now += 5.0
    assert b.allow()  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # one probe at a time
    b.success()
    assert b.state is BreakerState.CLOSED
    assert b.allow() and b.allow()


def test_a_failed_probe_opens_again_for_a_full_period() -> None:
    clock = Clock()
    b = Breaker("publish", failures=1, reset_after=2.0, clock=clock)
    b.allow()
    b.failure()
    clock.now += 2.0
    assert b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN
    clock.now += 1.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow() and b.state is BreakerState.HALF_OPEN


def test_a_cancelled_probe_frees_its_slot() -> None:
    clock = Clock()
    b = Breaker("rpc", failures=1, reset_after=1.0, clock=clock)
    b.allow()
    b.failure()
    clock.now += 1.0
    assert b.allow()
    b.release()
    assert b.allow()  # another probe may go


@pytest.mark.parametrize("kwargs", [{"failures": 0}, {"reset_after": 0.0}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Breaker("x", **kwargs)  # type: ignore[arg-type]
