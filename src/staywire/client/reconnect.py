"""When to connect again: from the close code, the retry budget, and a drain notice.

Sans-I/O: times are passed in (``loop.time()`` in the client), and the delay is
slept by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

from staywire.client.state import CloseInfo
from staywire.exceptions import ConnectionClosed, ReconnectFailed, Unauthorized
from staywire.protocol.backoff import ReconnectPolicy, RetryBudget, jittered
from staywire.protocol.codes import CloseCode, Reconnect, reconnect_policy

__all__ = ["ReconnectSchedule"]


class ReconnectSchedule:
    """The reconnect budget of one client, and the decision after each close."""

    def __init__(
        self, policy: ReconnectPolicy, *, can_refresh: bool, random: Callable[[], float]
    ) -> None:
        self._budget = RetryBudget(policy)
        self._can_refresh = can_refresh  # a token provider can renew an expired token
        self._random = random
        self._drain_at: float | None = None

    @property
    def attempts(self) -> int:
        """Reconnect attempts since the last welcomed connection."""
        return self._budget.attempts

    def opened(self) -> None:
        """A connection was welcomed: the next outage starts again from the base delay."""
        self._budget.reset()

    def drain(self, reconnect_in_ms: float, now: float) -> float:
        """The server is going away: leave at about ``reconnect_in_ms`` (jittered), and come
        back right then rather than after the backoff delay. Returns the delay."""
        delay = jittered(max(0.0, reconnect_in_ms) / 1000.0, self._random)
        self._drain_at = now + delay
        return delay

    def after(self, close: CloseInfo, now: float) -> float | ConnectionClosed:
        """After ``close``: the delay before the next attempt, or the error to give up with."""
        policy = reconnect_policy(close.code)
        if policy is Reconnect.NEVER:
            return _terminal_error(close)
        if policy is Reconnect.NEW_TOKEN and not self._can_refresh:
            # A fixed token cannot be renewed: reconnecting would only meet 4401 again.
            return ConnectionClosed(close.code, close.reason)
        first_after_expiry = policy is Reconnect.NEW_TOKEN and self._budget.attempts == 0
        delay = self._budget.next_delay()
        if delay is None:
            return ReconnectFailed(close.code, close.reason, self._budget.attempts)
        if first_after_expiry:
            delay = 0.0  # the token expired, nothing is wrong: come back at once
        if self._drain_at is not None:
            delay = max(0.0, self._drain_at - now)
            self._drain_at = None
        return delay


def _terminal_error(close: CloseInfo) -> ConnectionClosed:
    if close.code in (CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN):
        return Unauthorized(close.code, close.reason)
    return ConnectionClosed(close.code, close.reason)
