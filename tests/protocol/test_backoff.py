"""Backoff: sequence, cap, jitter range and retry budget, with a fake random."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from staywire.protocol.backoff import Backoff, RetryBudget, jittered


def fixed(value: float):
    return lambda: value


def test_nominal_sequence_doubles_from_one_second_and_caps_at_thirty():
    policy = Backoff(jitter=False, max_retries=None)
    assert [policy(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_jitter_multiplies_by_half_plus_random():
    assert Backoff(random=fixed(0.0))(1) == pytest.approx(0.5)
    assert Backoff(random=fixed(0.5))(3) == pytest.approx(4.0)
    assert Backoff(random=fixed(0.999))(2) == pytest.approx(2 * 1.499)


def test_cap_applies_before_jitter_so_capped_delays_stay_spread():
    low = Backoff(random=fixed(0.0), max_retries=None)(20)
    high = Backoff(random=fixed(0.999999), max_retries=None)(20)
    assert low == pytest.approx(15.0)
    assert high == pytest.approx(45.0, rel=1e-5)


@given(attempt=st.integers(1, 200), r=st.floats(0.0, 1.0, exclude_max=True))
def test_jittered_delay_is_within_half_and_one_and_a_half_of_nominal(attempt, r):
    policy = Backoff(random=fixed(r), max_retries=None)
    nominal = policy.nominal(attempt)
    delay = policy(attempt)
    assert delay is not None
    assert 0.5 * nominal <= delay < 1.5 * nominal + 1e-9


def test_huge_attempt_numbers_do_not_overflow():
    assert Backoff(jitter=False, max_retries=None)(10_000) == 30.0


def test_configurable_base_factor_and_cap():
    policy = Backoff(base=0.1, factor=3, cap=2.0, jitter=False, max_retries=None)
    assert [policy(n) for n in range(1, 6)] == pytest.approx([0.1, 0.3, 0.9, 2.0, 2.0])


def test_retry_limit_gives_up_after_max_retries():
    budget = RetryBudget(Backoff(random=fixed(0.5)))  # default max_retries=10
    delays = [budget.next_delay() for _ in range(10)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]
    assert budget.next_delay() is None
    assert budget.attempts == 10
    assert budget.next_delay() is None  # stays spent


def test_reset_restarts_from_the_base_delay():
    budget = RetryBudget(Backoff(random=fixed(0.5), max_retries=3))
    assert [budget.next_delay() for _ in range(3)] == [1, 2, 4]
    budget.reset()
    assert budget.next_delay() == 1


def test_zero_retries_gives_up_at_once():
    assert RetryBudget(Backoff(max_retries=0)).next_delay() is None


def test_any_callable_replaces_the_policy():
    seen: list[int] = []

    def policy(attempt: int) -> float | None:
        seen.append(attempt)
        return None if attempt > 2 else 0.25

    budget = RetryBudget(policy)
    assert [budget.next_delay() for _ in range(3)] == [0.25, 0.25, None]
    assert seen == [1, 2, 3]


def test_negative_delays_from_a_custom_policy_are_clamped():
    assert RetryBudget(lambda n: -1.0).next_delay() == 0.0


def test_jitter_spreads_uniformly_with_a_sequence_of_randoms():
    values = itertools.cycle([0.0, 0.25, 0.5, 0.75])
    policy = Backoff(random=lambda: next(values), max_retries=None)
    assert [policy(1) for _ in range(4)] == pytest.approx([0.5, 0.75, 1.0, 1.25])


def test_jittered_helper():
    assert jittered(2.0, fixed(0.0)) == 1.0
    assert jittered(2.0, fixed(0.5)) == 2.0


@pytest.mark.parametrize(
    "kwargs", [{"base": -1}, {"cap": -1}, {"factor": 0.5}, {"max_retries": -1}]
)
def test_invalid_options_are_rejected(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
