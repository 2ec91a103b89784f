"""A circuit breaker: stop calling a backend that is down, and probe it back to life.

Why: when the application's backend is down, every connect, subscribe and publish
would otherwise wait for its own timeout, hold a concurrency slot, and retry: the
outage multiplies the load on the backend just as it tries to come back, and every
client waits the full timeout for an answer that is known in advance.

States (an explicit enum, every transition through ``_enter``, which logs it):

* ``CLOSED``: calls go through; ``failures`` failures in a row open the circuit.
* ``OPEN``: calls fail at once, without touching the network, for ``reset_after``
  seconds.
* ``HALF_OPEN``: one probe call goes through; its success closes the circuit, its
  failure opens it again for another ``reset_after``. Other calls fail at once
  while the probe is out.

Sans-I/O: the clock is injected, so tests move time instead of sleeping.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

__all__ = ["Breaker", "BreakerState"]

log = logging.getLogger("staywire.proxy")


class BreakerState(enum.IntEnum):
    """The value is what the ``staywire_proxy_breaker_state`` gauge shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    __slots__ = ("name", "failures", "reset_after", "_clock", "state", "_count", "_opened_at",
                 "_probing")

    def __init__(self, name: str, *, failures: int = 5, reset_after: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        if reset_after <= 0:
            raise ValueError(f"reset_after must be > 0, got {reset_after}")
        self.name = name
        self.failures = failures
        self.reset_after = reset_after
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._count = 0  # failures in a row while CLOSED
        self._opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        """May a call go out now? In ``HALF_OPEN`` only one may, until it reports."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.reset_after:
                return False
            self._enter(BreakerState.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._count = 0
        self._probing = False
        if self.state is not BreakerState.CLOSED:
            self._enter(BreakerState.CLOSED)

    def failure(self) -> None:
        self._probing = False
        if self.state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._count += 1
        if self.state is BreakerState.CLOSED and self._count >= self.failures:
            self._open()

    def release(self) -> None:
        """A call that went out ended with neither verdict (cancelled): free the probe."""
        self._probing = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._count = 0
        self._enter(BreakerState.OPEN)

    def _enter(self, state: BreakerState) -> None:
        log_at = logging.WARNING if state is BreakerState.OPEN else logging.INFO
        log.log(log_at, "proxy %s: circuit %s -> %s", self.name, self.state.name.lower(),
                state.name.lower())
        self.state = state
