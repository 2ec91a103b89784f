"""Reconnect delays: exponential backoff with jitter, and a bounded retry budget.

Why jitter: after a server restart every client loses its connection at the
same instant. Without jitter they would all come back at the same instants
too (1 s, 2 s, 4 s, ...) and hammer the new process in synchronized waves.
Multiplying each delay by ``0.5 + random()`` spreads them evenly over
``[0.5, 1.5)`` times the nominal delay.

Why a budget: a client that retries forever hides an outage from its
application. After ``max_retries`` failed attempts in a row the client gives up
and says so (``ReconnectFailed``).

Sans-I/O: no clock and no sleeping here; the randomness is injected, so the
sequence is reproducible in tests.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "ReconnectPolicy", "RetryBudget", "jittered"]

#: Given the 1-based number of the reconnect attempt about to be made, the delay
#: in seconds before it, or ``None`` to give up. ``Backoff`` is one; any callable
#: with this shape can replace it.
ReconnectPolicy = Callable[[int], float | None]

# The exponent never needs to exceed this: 2**64 times any sane base is far
# above any cap, and it keeps ``factor ** n`` from overflowing a float.
_MAX_EXPONENT = 64


def jittered(seconds: float, random: Callable[[], float] = _random.random) -> float:
    """``seconds`` multiplied by ``0.5 + random()``: uniform over [0.5, 1.5) times it."""
    return seconds * (0.5 + random())


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """The default reconnect policy: ``min(cap, base * factor**(n-1))``, then jittered.

    The cap applies to the nominal delay, before jitter, so that clients at the
    cap stay spread out over [0.5, 1.5) times the cap instead of piling up at
    exactly the cap. ``max_retries=None`` retries forever (an explicit choice).
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    max_retries: int | None = 10
    jitter: bool = True
    random: Callable[[], float] = field(default=_random.random, repr=False)

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff base and cap must be >= 0")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be >= 0 or None")

    def nominal(self, attempt: int) -> float:
        """The delay before jitter for the 1-based ``attempt``."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        exponent = min(attempt - 1, _MAX_EXPONENT)
        return min(self.cap, self.base * self.factor**exponent)

    def __call__(self, attempt: int) -> float | None:
        if self.max_retries is not None and attempt > self.max_retries:
            return None
        delay = self.nominal(attempt)
        return jittered(delay, self.random) if self.jitter else delay


class RetryBudget:
    """Counts reconnect attempts in a row and asks the policy for each delay.

    ``reset()`` is called when a connection is fully open (``welcome``), so the
    budget is about consecutive failures, and the next outage starts again
    from the base delay.
    """

    __slots__ = ("_policy", "attempts")

    def __init__(self, policy: ReconnectPolicy) -> None:
        self._policy = policy
        self.attempts = 0

    def next_delay(self) -> float | None:
        """The delay before the next attempt, or ``None`` when the budget is spent."""
        delay = self._policy(self.attempts + 1)
        if delay is None:
            return None
        self.attempts += 1
        return max(0.0, delay)

    def reset(self) -> None:
        self.attempts = 0
