"""A keep-alive HTTP/1.1 client for the proxies' one job: POST JSON, read a small answer.

Why not a general client: measured with ``staywire bench --workloads proxy``, httpx's
pool cost the node about 3 ms of CPU per call (it polls every pooled socket on each
request, httpcore #928) and aiohttp's about 0.15 ms, more than the FastAPI backend
spends answering (about 0.11 ms). This client is an asyncio ``Protocol`` per
connection with httptools' C parser (the one uvicorn uses): about 0.05 ms.

What it does, and no more:

* ``POST`` with ``Content-Length``; HTTP/1.1 answers with a length, chunked or
  read-to-close bodies (httptools decodes the framing); ``Accept-Encoding: identity``,
  so a body is never compressed.
* One request at a time per connection; idle connections are reused newest first
  and dropped after ``keepalive`` seconds idle, under the usual servers' own idle
  timeouts (uvicorn 5 s, gunicorn 2 s) so that a reused socket is rarely one the
  server is closing. At most ``max_connections`` per origin (the caller bounds the
  calls in flight to the same number).
* No cookies kept, no redirects followed (a redirect is its status), no proxy
  environment variables: a call goes where its URL says and carries only its body.
* A connection is reused only after a complete answer that allows keep-alive; any
  error, a cancelled or timed-out call, or an answer over ``max_body`` closes it, so
  a late answer can never be read as the next call's.

``HttpError`` says what went wrong: ``kind`` is ``"unreachable"`` (no connection, or
it closed before the answer), ``"protocol"`` (not HTTP) or ``"oversized"``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["SWEEP", "HttpError", "HttpPool"]

#: Seconds between two checks of the calls' deadlines: a call times out at most this late.
SWEEP = 0.02


class HttpError(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class _Target:
    origin: tuple[str, str, int]  # scheme, host, port
    head: bytes  # the request line and the fixed headers, up to Content-Length's value


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError("protocol", f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname:  # an IPv6 literal keeps its brackets in Host
        host = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Accept: application/json\r\nAccept-Encoding: identity\r\n"
            "User-Agent: staywire-proxy\r\nContent-Length: ").encode("latin-1")
    return _Target((parts.scheme, parts.hostname, port), head)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: httptools' callbacks fill the answer of the call."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._status = 0
        self._framed = False  # a Content-Length or chunked answer: else read to the close
        self._headers_done = False
        self.deadline: float | None = None  # the call's, in the loop's time

    # -- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's TCP transport is not an asyncio.Transport subclass.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # raised in a callback below
            context = exc.__context__
            self._fail(context if isinstance(context, HttpError)
                       else HttpError("protocol", str(exc)))
        except httptools.HttpParserError as exc:
            self._fail(HttpError("protocol", str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self._answer
        if (answer is not None and not answer.done() and self._headers_done
                and not self._framed):
            answer.set_result((self._status, b"".join(self._chunks)))  # read to the close
        self._fail(HttpError("unreachable", "the connection closed before the answer"))

    # -- httptools
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self._framed = True
            if not value.strip().isdigit() or int(value) > self.max_body:
                raise HttpError("oversized" if value.strip().isdigit() else "protocol")
        elif name == b"transfer-encoding":
            self._framed = True

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            raise HttpError("oversized")
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            self.deadline = None
            if not self._parser.should_keep_alive():
                self.close()
            answer.set_result((self._status, b"".join(self._chunks)))

    # -- the pool's side
    def send(self, request: bytes, deadline: float | None = None
             ) -> asyncio.Future[tuple[int, bytes]]:
        """Write ``request``; the future of its answer. Past ``deadline`` (the loop's time)
        the pool's sweep fails a call still unanswered with ``TimeoutError`` and closes the
        connection, so a trickling answer is bounded too."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._chunks, self._size, self._status = [], 0, 0
        self._framed = self._headers_done = False
        self._answer = asyncio.get_running_loop().create_future()
        self.deadline = deadline
        self.transport.write(request)
        return self._answer

    def expired(self) -> None:
        self.deadline = None
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(TimeoutError("no answer in time"))
        self.close()

    def _fail(self, exc: HttpError) -> None:
        self.deadline = None
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    def __init__(self, *, max_connections: int, max_body: int, keepalive: float = 4.0) -> None:
        self.max_connections = max_connections
        self.max_body = max_body
        self.keepalive = keepalive
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def post(self, url: str, body: bytes, deadline: float | None = None
                   ) -> tuple[int, bytes]:
        """``(status, body)`` of one POST; ``HttpError`` when there is no HTTP answer,
        ``TimeoutError`` when none came by ``deadline`` (the loop's time)."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _target(url)
        conn = self._idle_connection(target.origin) or await self._open(target.origin,
                                                                         deadline)
        self._busy.add(conn)
        if deadline is not None and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP, self._sweep)
        reusable = False
        try:
            status, answer = await conn.send(
                b"%s%d\r\n\r\n%s" % (target.head, len(body), body), deadline)
            reusable = not conn.closed
            return status, answer
        finally:
            self._busy.discard(conn)
            if reusable:
                conn.idle_since = time.monotonic()
                idle = self._idle.setdefault(target.origin, [])
                if len(idle) < self.max_connections:
                    idle.append(conn)
                else:
                    conn.close()
            else:
                conn.close()  # errors, cancellation, timeouts: never reuse it

    def _sweep(self) -> None:
        """Every ``SWEEP`` seconds while calls are in flight: fail those past their deadline.

        One timer for the pool, not one per call: measured (a ProxyClient call against the
        FastAPI backend, 48 in flight), a timer per call, ``asyncio.timeout`` or a bare
        ``call_at``, cost about 9 us of CPU of a 57 us call."""
        self._sweeper = None
        if not self._busy:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in [c for c in self._busy if c.deadline is not None and c.deadline <= now]:
            conn.expired()
        self._sweeper = loop.call_later(SWEEP, self._sweep)

    def _idle_connection(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        oldest_ok = time.monotonic() - self.keepalive
        while idle:
            conn = idle.pop()  # the newest: the least likely to be closing
            if conn.closed:
                continue
            if conn.idle_since < oldest_ok:
                # The list is in idle order: every one older has expired too.
                for old in (conn, *idle):
                    old.close()
                idle.clear()
                return None
            return conn
        return None

    async def _open(self, origin: tuple[str, str, int], deadline: float | None = None
                    ) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            # A new connection is the rare case: asyncio's own timeout is fine here.
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(lambda: _Connection(self.max_body),
                                                       host, port, ssl=context)
        except (OSError, ssl.SSLError) as exc:
            raise HttpError("unreachable", str(exc)) from None
        return conn

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        self._busy.clear()
