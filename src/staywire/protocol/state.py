"""The per-connection state machine, shared by the server and the clients' docs.

Every transition goes through ``ConnectionStateMachine.advance``, which refuses
the ones the protocol does not allow ("expected X, got Y") so a bug shows up as
a loud error at the transition instead of a half-open connection later.
"""

from __future__ import annotations

import enum
import logging

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
    __slots__ = ("state",)

    def __init__(self, initial: ConnState = ConnState.CONNECTING) -> None:
        self.state = initial

    def advance(self, new: ConnState) -> None:
        old = self.state
        if new not in _ALLOWED[old]:
            raise InvalidTransition(f"expected one of {sorted(s.name for s in _ALLOWED[old])} "
                                    f"after {old.name}, got {new.name}")
        self.state = new
        if log.isEnabledFor(logging.DEBUG):
            log.debug("state %s -> %s", old.name, new.name)
