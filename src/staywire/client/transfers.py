"""Transfers as an application sees them: ``Transfer`` items on a subscription, and the
asyncio side of ``Client.send_transfer``.

The rules live in the sans-I/O core (protocol/transfer.py: ``Chunker``, ``Receiver``);
this module only moves bytes between it, the application and the publish path.
docs/client-python.md, *Transfers*, shows the use.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import IO, Any, Protocol

import msgspec

from staywire.client import messages as m
from staywire.protocol.binary import MAX_META, Chunk
from staywire.protocol.transfer import (
    DEFAULT_TIMEOUT,
    Chunker,
    OutChunk,
    Receiver,
    Received,
    TransferFailed,
)

__all__ = ["Source", "Transfer", "TransferFailed", "TransferInbox", "send_chunks",
           "send_transfer"]

Source = bytes | bytearray | memoryview | IO[bytes] | AsyncIterator[bytes]
Progress = Callable[[int, int | None], None]

_END = object()


class Transfer:
    """One payload arriving in chunks: ``async for chunk in transfer`` or ``await
    transfer.read()``. Iteration raises ``TransferFailed`` (``code``: ``transfer_corrupt``,
    ``transfer_timeout``, ``transfer_order``) when the transfer cannot complete, after the
    chunks before it; a finished transfer has matched its SHA-256."""

    def __init__(self, channel: str, transfer: str, meta: bytes, size: int | None) -> None:
        self.channel = channel
        self.id = transfer
        self.meta: Any = msgspec.json.decode(meta) if meta else None
        self.size = size  # the whole payload's length when the publisher knew it
        self.done = 0  # bytes received so far
        self.finished = False
        self.error: TransferFailed | None = None
        self._chunks: deque[bytes | object] = deque()
        self._wakeup = asyncio.Event()

    @property
    def progress(self) -> tuple[int, int | None]:
        """``(bytes received, total)``; total is None when the publisher did not know it."""
        return self.done, self.size

    def __aiter__(self) -> Transfer:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._chunks[0]
        if item is _END:
            if self.error is not None:
                raise self.error
            raise StopAsyncIteration
        self._chunks.popleft()
        assert isinstance(item, bytes)
        return item

    async def read(self) -> bytes:
        """The whole payload once it completed (raises ``TransferFailed`` otherwise)."""
        return b"".join([chunk async for chunk in self])

    def _take(self, got: Received) -> None:
        if self._chunks and self._chunks[-1] is _END:
            return
        if got.failure is not None:
            self.error = got.failure
        else:
            self.done = got.done
            if got.data:
                self._chunks.append(got.data)
            self.finished = got.finished
        if got.failure is not None or got.finished:
            self._chunks.append(_END)
        self._wakeup.set()


class TransferInbox:
    """The transfers of one subscription: a ``Transfer`` for each first chunk, and every
    later chunk into its transfer (not an item of its own)."""

    def __init__(self, channel: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.channel = channel
        self._receiver = Receiver(timeout=timeout)
        self._open: dict[str, Transfer] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def timeout(self) -> float:
        return self._receiver.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:  # the welcome says the server's
        self._receiver.timeout = value

    def feed(self, chunk: Chunk, payload: bytes) -> Transfer | None:
        """One publication's chunk; the new ``Transfer`` when it is a first chunk."""
        got = self._receiver.feed(chunk, payload, _now())
        if got is None:
            return None
        fresh = None
        if got.started and got.failure is None:
            fresh = Transfer(self.channel, got.transfer, got.meta, got.size)
            self._open[got.transfer] = fresh
        self._settle(got)
        self._arm()
        return fresh

    def lost(self, reason: str) -> None:
        """Publications were lost (a recovery that was not complete)."""
        for got in self._receiver.lost(reason):
            self._settle(got)

    def close(self, failure: TransferFailed | None = None) -> None:
        """The subscription ended: open transfers end too (with ``failure``, or a timeout)."""
        for name in list(self._open):
            self._settle(Received(name, failure=failure or TransferFailed(
                name, "transfer_timeout", "the subscription ended")))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _settle(self, got: Received) -> None:
        transfer = self._open.get(got.transfer)
        if transfer is None:
            return
        transfer._take(got)
        if got.failure is not None or got.finished:
            del self._open[got.transfer]

    def _arm(self) -> None:
        if self._open and self._timer is None:
            # Checked at a quarter of the timeout: a silent publisher ends within 1.25x.
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._receiver.timeout / 4, self._tick)

    def _tick(self) -> None:
        self._timer = None
        for got in self._receiver.expire(_now()):
            self._settle(got)
        self._arm()


def _now() -> float:
    return asyncio.get_running_loop().time()


def new_transfer_id() -> str:
    return secrets.token_urlsafe(12)  # 16 characters of A-Z a-z 0-9 _ -


# Publishes one chunk and resolves when it is acknowledged (across reconnects).
PublishChunk = Callable[[OutChunk], Awaitable[Any]]


class _Chunks(Protocol):
    async def publish_chunk(self, channel: str, out: OutChunk) -> int: ...
    def discard_transfer(self, transfer: str) -> None: ...


async def send_transfer(publisher: _Chunks, channel: str, source: Source, *,
                        info: m.BinaryInfo, meta: Any = None,
                        on_progress: Progress | None = None) -> str:
    """Publish ``source`` as one transfer; its id once the last chunk is acknowledged.
    A failure (a refused chunk, the client closed) drops the chunks not yet sent."""
    size = len(source) if isinstance(source, bytes | bytearray | memoryview) else None
    if size is not None and size > info.max_transfer_size:
        raise ValueError(f"{size} bytes is over the server's max_transfer_size "
                         f"({info.max_transfer_size})")
    meta_json = None if meta is None else m.encode_data(meta)
    if meta_json is not None and len(meta_json) > MAX_META:
        raise ValueError(f"a transfer's meta is at most {MAX_META} bytes of JSON")
    transfer = new_transfer_id()
    chunker = Chunker(transfer, chunk_size=info.max_data_size,
                      window=max(1, info.transfer_window), size=size, meta=meta_json)
    try:
        await send_chunks(chunker, source,
                          lambda out: publisher.publish_chunk(channel, out), on_progress)
    except BaseException:
        publisher.discard_transfer(transfer)
        raise
    return transfer


async def send_chunks(chunker: Chunker, source: Source, publish: PublishChunk,
                      on_progress: Progress | None = None) -> None:
    """Feed ``source`` into ``chunker`` and publish its chunks, at most its window at once,
    in order; returns when the last chunk is acknowledged. The source is read while
    chunks are in flight, and no further ahead than the window."""
    feed = _reader(source, chunker.chunk_size)
    in_flight: dict[int, asyncio.Future[Any]] = {}
    reading: asyncio.Future[bytes | None] | None = None
    try:
        while not chunker.done:
            while (out := chunker.next_chunk()) is not None:
                chunker.sent(out.seq)
                in_flight[out.seq] = asyncio.ensure_future(publish(out))
            if reading is None and chunker.wants_data:
                reading = asyncio.ensure_future(feed.__anext__())
            waiting: set[asyncio.Future[Any]] = set(in_flight.values())
            if reading is not None:
                waiting.add(reading)
            if not waiting:  # pragma: no cover - the chunker always has one or the other
                raise RuntimeError("transfer stalled: nothing to read and nothing in flight")
            finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if reading is not None and reading in finished:
                piece, reading = reading.result(), None
                if piece is None:
                    chunker.finish()
                else:
                    chunker.feed(piece)
            acked = False
            for seq, task in sorted(in_flight.items()):
                if task in finished:
                    task.result()  # a refused chunk fails the transfer
                    del in_flight[seq]
                    chunker.acked(seq)
                    acked = True
            if acked and on_progress is not None:
                on_progress(chunker.acked_bytes, chunker.size)
    finally:
        for task in in_flight.values():
            task.cancel()
        if reading is not None:  # the source's next piece, still awaited: stop it first
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        await feed.aclose()


def _reader(source: Source, size: int) -> AsyncGenerator[bytes | None, None]:
    async def pieces() -> AsyncGenerator[bytes | None, None]:
        if isinstance(source, bytes | bytearray | memoryview):
            view = memoryview(source).cast("B")
            for start in range(0, len(view), size):
                yield bytes(view[start:start + size])
        elif hasattr(source, "__aiter__"):
            async for piece in source:
                if not isinstance(piece, bytes | bytearray | memoryview):
                    raise TypeError(f"a transfer's source gave {type(piece).__name__}, "
                                    "not bytes")
                if piece:
                    yield bytes(piece)
        else:
            read = source.read
            while True:
                piece = await asyncio.to_thread(read, size)
                if not piece:
                    break
                yield bytes(piece)
        while True:
            yield None

    return pieces()
