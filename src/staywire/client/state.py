"""Connection states, and the ways an application observes their changes.

Why both a callback and an async iterator: a callback is right for a status
light (it runs at once, in order, and must not block); an iterator is right for
a task that reacts to changes (``async for change in client.state_changes()``).
Neither can miss a change: the callback runs synchronously at the transition,
and every iterator has its own queue from the moment it was created.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from staywire.protocol.codes import CloseCode

__all__ = ["CLIENT_CLOSED", "CloseInfo", "ConnectionState", "StateChange", "StateWatch"]

log = logging.getLogger("staywire.client")


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"  # the first connection is being made
    OPEN = "open"  # welcomed: requests flow
    RECONNECTING = "reconnecting"  # the connection was lost; waiting to retry, or retrying
    CLOSED = "closed"  # final: closed by the application, or given up (see ``Client.error``)


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How a connection ended. 1006: no close frame arrived (the link dropped)."""

    code: int
    reason: str = ""


CLIENT_CLOSED = CloseInfo(int(CloseCode.NORMAL), "client closed")  # how close() ends it


@dataclass(frozen=True, slots=True)
class StateChange:
    previous: ConnectionState
    state: ConnectionState
    close: CloseInfo | None = None  # the close that caused a change away from OPEN
    attempt: int = 0  # reconnect attempt number (RECONNECTING), 0 otherwise
    delay: float | None = None  # seconds until that attempt (RECONNECTING)


class StateWatch:
    """Holds the current state and fans each change out to a callback and to iterators."""

    def __init__(
        self,
        initial: ConnectionState,
        callback: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.state = initial
        self.finished = False  # a change to CLOSED happened: nothing follows
        self._callback = callback
        self._queues: list[asyncio.Queue[StateChange]] = []
        self._waiters: list[tuple[set[ConnectionState], asyncio.Future[None]]] = []

    def set(
        self,
        state: ConnectionState,
        *,
        close: CloseInfo | None = None,
        attempt: int = 0,
        delay: float | None = None,
    ) -> None:
        change = StateChange(self.state, state, close, attempt, delay)
        # RECONNECTING -> RECONNECTING is reported too: each attempt is news.
        if state is self.state and state is not ConnectionState.RECONNECTING:
            return
        self.state = state
        if state is ConnectionState.CLOSED:
            self.finished = True
        if self._callback is not None:
            try:
                self._callback(change)
            except Exception:  # an observer's bug must not break the connection
                log.exception("state change callback failed")
        for queue in self._queues:
            queue.put_nowait(change)
        keep = []
        for states, fut in self._waiters:
            if state in states and not fut.done():
                fut.set_result(None)
            elif not fut.done():
                keep.append((states, fut))
        self._waiters = keep

    async def wait_for(self, *states: ConnectionState) -> None:
        """Return as soon as the state is one of ``states``."""
        if self.state in states:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((set(states), fut))
        await fut

    def changes(self) -> AsyncIterator[StateChange]:
        """Every change from now on (registered at this call); ends after the change to CLOSED."""
        return _Changes(self)


class _Changes:
    """An iterator with its own queue, registered when created, so no change slips by."""

    def __init__(self, watch: StateWatch) -> None:
        self._watch = watch
        self._queue: asyncio.Queue[StateChange] = asyncio.Queue()
        self._done = watch.finished
        if not self._done:
            watch._queues.append(self._queue)

    def __aiter__(self) -> _Changes:
        return self

    async def __anext__(self) -> StateChange:
        if self._done:
            raise StopAsyncIteration
        change = await self._queue.get()
        if change.state is ConnectionState.CLOSED:
            self._done = True
            self._watch._queues.remove(self._queue)
        return change
