"""``AsyncApiClient``: the server API from asyncio code (FastAPI, Starlette, aiohttp...).

Standard library only (asyncio streams): the API port always answers HTTP/1.1 with a
``Content-Length``, so a client needs no more than that. Keep-alive connections in a
small pool (``max_connections`` requests in flight; more wait for one); a connection
idle longer than ``_IDLE`` is dropped before use, since the server closes idle ones
after 10 s and a request sent on one being closed could be lost.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec

from staywire.api import calls
from staywire.api import schema as s
from staywire.api.calls import Batch, Call
from staywire.api.sync import split_url
from staywire.exceptions import ApiConnectionError

__all__ = ["AsyncApiClient"]

R = TypeVar("R", bound=msgspec.Struct)
_IDLE = 5.0
_MAX_HEAD = 16 * 1024
_MAX_BODY = 64 * 1024 * 1024

_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class AsyncApiClient:
    """``AsyncApiClient("http://127.0.0.1:9765", api_key)``; ``await client.publish(...)``.

    Every method returns its typed reply (``staywire.api.schema``) or raises ``ApiError``
    (``ApiConnectionError`` when there was no answer within ``timeout``)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0,
                 max_connections: int = 8, ssl_context: ssl.SSLContext | None = None) -> None:
        scheme, self._host, self._port, self._prefix = split_url(url)
        self._ssl: ssl.SSLContext | None = None
        if scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._auth = f"Bearer {api_key}"
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[tuple[float, _Stream]] = []
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _, (_, writer) in idle:
            writer.close()

    async def call(self, call: Call[R]) -> R:
        if self._closed:
            raise ApiConnectionError("the client is closed")
        body = calls.encode_body(call)
        head = (f"POST {self._prefix}{calls.target(call)} HTTP/1.1\r\n"
                f"Host: {self._host}:{self._port}\r\nAuthorization: {self._auth}\r\n"
                f"Content-Type: {calls.content_type(call)}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        async with self._slots:
            stream: _Stream | None = None
            try:
                async with asyncio.timeout(self._timeout):
                    stream = await self._stream()
                    reader, writer = stream
                    writer.write(head.encode("latin-1") + body)
                    await writer.drain()
                    status, keep, data = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError) as exc:
                if stream is not None:
                    stream[1].close()
                raise ApiConnectionError(
                    f"{call.method}: {exc or type(exc).__name__}") from None
            if keep and not self._closed:
                self._idle.append((time.monotonic(), stream))
            else:
                stream[1].close()
        return calls.decode_reply(call, status, data)

    async def _stream(self) -> _Stream:
        now = time.monotonic()
        while self._idle:
            used, stream = self._idle.pop()
            if now - used <= _IDLE and not stream[1].is_closing():
                return stream
            stream[1].close()
        return await asyncio.open_connection(self._host, self._port, ssl=self._ssl,
                                             limit=_MAX_HEAD)

    # -- the methods (docs/api.md) --------------------------------------------------------

    async def publish(self, channel: str, data: Any, *, key: str | None = None
                      ) -> s.PublishReply:
        return await self.call(calls.publish(channel, data, key))

    async def broadcast(self, channels: list[str], data: Any, *, key: str | None = None
                        ) -> s.BroadcastReply:
        return await self.call(calls.broadcast(channels, data, key))

    async def history(self, channel: str, *, since: tuple[str, int] | None = None,
                      limit: int | None = None, reverse: bool = False) -> s.HistoryReply:
        return await self.call(calls.history(channel, since, limit, reverse))

    async def presence(self, channel: str, *, limit: int | None = None) -> s.PresenceReply:
        return await self.call(calls.presence(channel, limit))

    async def presence_stats(self, channel: str) -> s.PresenceStatsReply:
        return await self.call(calls.presence_stats(channel))

    async def channels(self, pattern: str, *, limit: int | None = None) -> s.ChannelsReply:
        return await self.call(calls.channels(pattern, limit))

    async def info(self) -> s.InfoReply:
        return await self.call(calls.info())

    async def disconnect(self, user: str, *, code: int | None = None,
                         reason: str | None = None, reconnect: bool | None = None,
                         client: str | None = None) -> s.DisconnectReply:
        return await self.call(calls.disconnect(user, code=code, reason=reason,
                                                reconnect=reconnect, client=client))

    async def refresh(self, user: str, expire_at: float | None) -> s.RefreshReply:
        return await self.call(calls.refresh(user, expire_at))

    async def subscribe(self, user: str, channel: str) -> s.SubscribeReply:
        """Join every connection of ``user``, on every node, to ``channel`` server-side."""
        return await self.call(calls.subscribe(user, channel))

    async def unsubscribe(self, user: str, channel: str) -> s.UnsubscribeReply:
        """Take every connection of ``user``, on every node, out of ``channel``."""
        return await self.call(calls.unsubscribe(user, channel))

    async def batch(self, batch: Batch) -> list[Any]:
        """One typed reply, or the ``ApiError`` it failed with, per command of ``batch``."""
        return batch.results(await self.call(batch.call()))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, keep the connection, body) of one HTTP/1.1 response with Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError("a response without Content-Length")
    size = int(headers["content-length"])
    if not 0 <= size <= _MAX_BODY:
        raise ValueError(f"a response body of {size} bytes")
    body = await reader.readexactly(size)
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return int(status), keep, body
