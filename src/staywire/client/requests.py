"""Requests waiting for their reply: ``sub``, ``unsub``, ``pub`` and ``rpc``.

Replies are matched to requests by ``id``; ids are unique for the life of the
client (a ``pub`` takes its id from here too, though the outbox tracks it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from staywire.client import messages as m
from staywire.client.state import CloseInfo
from staywire.exceptions import ConnectionClosed, RequestError
from staywire.protocol.codes import ErrorCode
from staywire.protocol.stream import MAX_ID

if TYPE_CHECKING:
    from staywire.client.link import Link

__all__ = ["Request", "Requests"]

C = TypeVar("C")  # what a channel request is about: ``channels.Channel``, which imports this


@dataclass(slots=True)
class Request(Generic[C]):
    kind: str  # "sub", "unsub", "resync", "pub", "rpc"
    channel: C | None = None
    future: asyncio.Future[Any] | None = None


class Requests:
    """The id counter and the requests of the current connection still waiting for a reply."""

    def __init__(self) -> None:
        self._next_id = 0
        self._pending: dict[int, Request[Any]] = {}

    def new_id(self) -> int:
        # Ids the server accepts are 1..MAX_ID; past it (in theory) they start again at 1.
        self._next_id = 1 if self._next_id >= MAX_ID else self._next_id + 1
        return self._next_id

    def add(self, request: Request[Any]) -> int:
        """Wait for ``request``'s reply under a new id, and return that id."""
        rid = self.new_id()
        self._pending[rid] = request
        return rid

    def pop(self, rid: int) -> Request[Any] | None:
        return self._pending.pop(rid, None)

    def resolve(self, rid: int, data: Any) -> None:
        """An rpc ``result`` arrived."""
        request = self._pending.pop(rid, None)
        if request is not None and request.future is not None and not request.future.done():
            request.future.set_result(data)

    async def call(self, link: Link, method: str, payload: bytes, *, binary: bool = False
                   ) -> Any:
        """Send an ``rpc`` on ``link`` and wait for its result (``binary``: ``payload``
        is bytes, sent in a binary frame)."""
        if binary:
            if not link.binary:
                raise RequestError(ErrorCode.BINARY_UNSUPPORTED.value,
                                   "the server selected protocol v1: no binary data")
            return await self.ask(link, lambda rid: m.encode_rpc_binary(rid, method, payload),
                                  binary=True)
        return await self.ask(link, lambda rid: m.encode_rpc(rid, method, payload))

    async def ask(self, link: Link, encode: Callable[[int], bytes], *, binary: bool = False
                  ) -> Any:
        """Send the request ``encode(id)`` makes (``rpc``, ``presence``...) and wait for
        its ``result``; an ``error`` reply raises ``RequestError``."""
        rid = self.new_id()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = Request[Any]("rpc", future=fut)
        try:
            if binary:
                link.send_binary(encode(rid))
            else:
                link.send(encode(rid))
            return await fut
        finally:
            self._pending.pop(rid, None)

    def connection_lost(self, close: CloseInfo) -> None:
        """No reply comes over a lost connection: whoever waits gets ``ConnectionClosed``."""
        requests, self._pending = self._pending, {}
        for request in requests.values():
            if request.future is not None and not request.future.done():
                request.future.set_exception(ConnectionClosed(close.code, close.reason))

    def fail(self, failure: ConnectionClosed) -> None:
        """The client is CLOSED: fail every waiter with ``failure``."""
        for request in self._pending.values():
            if request.future is not None and not request.future.done():
                request.future.set_exception(failure)
                request.future.exception()
        self._pending.clear()
