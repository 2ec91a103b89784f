"""The per-connection state machine, shared by the server and the clients' docs.

Every transition goes through ``ConnectionStateMachine.advance``, which refuses
the ones the protocol does not allow ("expected X, got Y") so a bug shows up as
a loud error at the transition instead of a half-open connection later.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

__all__ = ["ConnState", "ConnectionStateMachine", "InvalidTransition"]

log = logging.getLogger("staywire.state")


class ConnState(enum.IntEnum):
    CONNECTING = 0  # HTTP upgrade in progress
    AUTHENTICATING = 1  # upgraded; waiting for credentials
    OPEN = 2  # authenticated; requests are served
    CLOSING = 3  # a close frame was sent or received
    CLOSED = 4  # the TCP connection is gone


_ALLOWED: dict[ConnState, frozenset[ConnState]] = {
    ConnState.CONNECTING: frozenset({ConnState.AUTHENTICATING, ConnState.OPEN, ConnState.CLOSED}),
    ConnState.AUTHENTICATING: frozenset({ConnState.OPEN, ConnState.CLOSING, ConnState.CLOSED}),
    ConnState.OPEN: frozenset({ConnState.CLOSING, ConnState.CLOSED}),
    ConnState.CLOSING: frozenset({ConnState.CLOSED}),
    ConnState.CLOSED: frozenset(),
}


class InvalidTransition(RuntimeError):
    pass


class ConnectionStateMachine:
    __slots__ = ("state", "_on_change")

    def __init__(
        self,
        initial: ConnState = ConnState.CONNECTING,
        on_change: Callable[[ConnState, ConnState], None] | None = None,
    ) -> None:
        self.state = initial
        self._on_change = on_change

    def can(self, new: ConnState) -> bool:
        return new in _ALLOWED[self.state]

    def advance(self, new: ConnState) -> None:
        old = self.state
        if new not in _ALLOWED[old]:
            raise InvalidTransition(f"expected one of {sorted(s.name for s in _ALLOWED[old])} "
                                    f"after {old.name}, got {new.name}")
        self.state = new
        if log.isEnabledFor(logging.DEBUG):
            log.debug("state %s -> %s", old.name, new.name)
        if self._on_change is not None:
            self._on_change(old, new)

    def expect(self, *states: ConnState) -> None:
        if self.state not in states:
            raise InvalidTransition(f"expected {'/'.join(s.name for s in states)}, "
                                    f"got {self.state.name}")
