"""What an application holds for one channel: ``async with client.subscribe(ch) as sub``.

Why an iterator of items rather than callbacks: the order of deliveries is the
contract (no gap, no duplicate, in offset order), and a queue read by the
application keeps that order even when the application is slower than the
network. A ``Recovery`` item sits in that same order, exactly where the
stream stopped being complete, so the application knows which state to refetch.
On a channel with ``join_leave`` (docs/configuration.md), ``Join`` and ``Leave``
items come the same way, in the order the server sent them among the messages.
A transfer (docs/protocol.md, *Transfers*) is one ``Transfer`` item, at its first
chunk; its bytes are read from it (client/transfers.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from staywire.client.transfers import Transfer, TransferInbox
from staywire.exceptions import ConnectionClosed
from staywire.protocol.binary import Chunk
from staywire.protocol.positions import Position

__all__ = ["Item", "Join", "Leave", "Member", "Message", "Presence", "Recovery",
           "Subscription", "Transfer"]


@dataclass(frozen=True, slots=True)
class Message:
    """A publication, delivered once, in offset order.

    ``data`` is the decoded JSON, or ``bytes`` for binary data (JSON never decodes to
    bytes, so ``isinstance(item.data, bytes)`` tells them apart). ``chunk`` is set on a
    piece of a transfer (``protocol.binary.Chunk``)."""

    channel: str
    epoch: str
    offset: int
    data: Any
    chunk: Any = None


@dataclass(frozen=True, slots=True)
class Recovery:
    """Publications may have been missed here: refetch the state this channel feeds.

    ``recovered`` is always False when the item is delivered (a complete recovery
    is not news). ``epoch_changed``: the stream itself was recreated (a memory
    broker restarted); the messages after this item are the new stream from its
    start. ``previous`` is the last position delivered before."""

    channel: str
    recovered: bool
    epoch_changed: bool
    previous: Position | None
    position: Position | None


@dataclass(frozen=True, slots=True)
class Member:
    """One client of one user on a presence channel; ``user`` is "" for anonymous ones,
    ``info`` the connection's data from the application's backend, when it has some."""

    user: str
    client: str
    info: Any = None


@dataclass(frozen=True, slots=True)
class Join:
    """A user's first client joined the channel (``join_leave`` channels)."""

    channel: str
    user: str
    client: str
    info: Any = None


@dataclass(frozen=True, slots=True)
class Leave:
    """A user's last client left the channel (after the server's grace period)."""

    channel: str
    user: str
    client: str
    info: Any = None


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is subscribed: ``clients`` and distinct ``users`` on every node, and the
    members; ``stats_only`` when the channel is over ``presence_max_members`` and
    ``members`` is left empty."""

    clients: int
    users: int
    members: list[Member]
    stats_only: bool = False


Item = Message | Recovery | Join | Leave | Transfer


class _Host(Protocol):
    async def _presence(self, channel: str, stats: bool) -> Any: ...

    def _attach(self, sub: Subscription) -> None: ...

    def _detach(self, sub: Subscription) -> None: ...

    def _position(self, channel: str) -> Position | None: ...


_END = object()


class Subscription:
    """An async iterator of ``Message`` and ``Recovery`` items for one channel.

    Entering the ``async with`` returns once the server acknowledged the
    subscription (after a reconnect, if need be). Iteration raises the client's
    terminal error (``ReconnectFailed``, ``Unauthorized``, ...) once everything
    received before it has been consumed, and ends after ``Client.close()``.
    """

    def __init__(self, host: _Host, channel: str) -> None:
        self._host = host
        self.channel = channel
        self._items: deque[Item | object] = deque()
        self._wakeup = asyncio.Event()
        self._error: BaseException | None = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._attached = False
        self.delivered = 0  # messages handed to this subscription
        self.server_side = False  # subscribed by the server (``Client.server_subscriptions``)
        self._transfers = TransferInbox(channel)

    @property
    def position(self) -> Position | None:
        """The channel's last delivered ``(epoch, offset)``."""
        return self._host._position(self.channel)

    @property
    def pending(self) -> int:
        """Items received but not yet consumed."""
        return len(self._items)

    async def __aenter__(self) -> Self:
        self._host._attach(self)
        self._attached = True
        try:
            await self._ready
        except BaseException:
            self._host._detach(self)
            self._attached = False
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop receiving; the client unsubscribes when no local subscriber is left."""
        if self._attached:
            self._attached = False
            self._host._detach(self)
        self._end()

    async def presence(self) -> Presence:
        """The channel's members (a channel with ``presence``); ``RequestError`` with
        ``presence_disabled`` on another channel. Waits for the connection to be open."""
        data = await self._host._presence(self.channel, False)
        members = [Member(m.get("user", ""), m["client"], m.get("info"))
                   for m in data.get("members") or []]
        return Presence(data["clients"], data["users"], members, bool(data.get("stats_only")))

    async def presence_stats(self) -> tuple[int, int]:
        """``(clients, users)`` subscribed to the channel, on every node."""
        data = await self._host._presence(self.channel, True)
        return data["clients"], data["users"]

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        while not self._items:
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._items[0]
        if item is _END:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        self._items.popleft()
        assert isinstance(item, Message | Recovery | Join | Leave | Transfer)
        return item

    # -- called by the client ----------------------------------------------------------

    def _chunk(self, chunk: Chunk, payload: bytes) -> None:
        """A publication that is a piece of a transfer: a ``Transfer`` item at its start,
        and its bytes into that transfer."""
        if self._items and self._items[-1] is _END:
            return
        started = self._transfers.feed(chunk, payload)
        if started is not None:
            self._push(started)

    def _transfer_timeout(self, seconds: float) -> None:
        self._transfers.timeout = seconds  # the server's, from welcome.binary

    def _push(self, item: Item) -> None:
        if self._items and self._items[-1] is _END:
            return
        if isinstance(item, Recovery) and not item.recovered:
            # Publications were lost: a chunk of an open transfer may be among them.
            self._transfers.lost("publications were lost that history no longer holds")
        if isinstance(item, Message | Transfer):
            self.delivered += 1
        self._items.append(item)
        self._wakeup.set()

    def _subscribed(self) -> None:
        if not self._ready.done():
            self._ready.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        """End with an error: raised by ``__aenter__`` or, after what is queued, by iteration."""
        if not self._ready.done():
            self._ready.set_exception(exc)
            self._ready.exception()  # retrieved: no "never retrieved" warning if nobody awaits
        if self._error is None:
            self._error = exc
        self._end()

    def _end(self) -> None:
        self._transfers.close()
        if not self._ready.done():
            self._ready.set_exception(ConnectionClosed(1000, "subscription closed"))
            self._ready.exception()
        if not self._items or self._items[-1] is not _END:
            self._items.append(_END)
        self._wakeup.set()
