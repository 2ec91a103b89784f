"""A small asyncio TCP proxy for failure tests: reset every connection, black-hole, resume.

    proxy = await TcpProxy("127.0.0.1", server_port).start()
    url = f"ws://127.0.0.1:{proxy.port}/ws"
    proxy.reset_all()      # RST both sides of every connection (SO_LINGER 0)
    proxy.pause()          # stop forwarding, keep sockets open: a black-holed link
    proxy.pause(upstream=False)  # only server -> client stops (acks held, pubs land)
    proxy.resume()         # forward again, bytes held meanwhile included
    await proxy.close()

A paused direction is not read at all, so its bytes wait in the kernel exactly
as on a link that silently stopped delivering packets: no FIN, no RST, nothing.
``rcvbuf`` makes the proxy's receive windows small, so that a writer blocked by
a pause sees its own user-space write buffer grow quickly (backpressure tests).
Loopback only; every socket it opens is closed by ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Self

__all__ = ["TcpProxy"]


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; forwards what it reads to its peer."""

    def __init__(self, conn: _Connection, upstream: bool) -> None:
        self.conn = conn
        self.upstream = upstream  # True: the socket to the server
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.apply_pause()

    def apply_pause(self) -> None:
        """Read or not according to the proxy's switch for the direction this side feeds."""
        if self.transport is None or self.transport.is_closing():
            return
        proxy = self.conn.proxy
        # The client side feeds upstream (client -> server); the server side feeds downstream.
        want = proxy.downstream_paused if self.upstream else proxy.upstream_paused
        if want and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        elif not want and self.paused:
            self.transport.resume_reading()
            self.paused = False

    def data_received(self, data: bytes) -> None:
        self.conn.forward(self, data)

    def eof_received(self) -> bool:
        self.conn.close(graceful=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.close(graceful=True)


class _Connection:
    """A client socket, its upstream socket, and the bytes waiting for the upstream."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.client = _Side(self, upstream=False)
        self.server: _Side | None = None
        self.early: list[bytes] = []  # client bytes read before the upstream connected
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    def forward(self, side: _Side, data: bytes) -> None:
        if side is self.client:
            if self.server is None or self.server.transport is None:
                self.early.append(data)
            else:
                self.server.transport.write(data)
        elif self.client.transport is not None:
            self.client.transport.write(data)

    async def connect_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, side = await loop.create_connection(
                lambda: _Side(self, upstream=True), self.proxy.host, self.proxy.upstream_port
            )
        except OSError:
            self.close(graceful=False)
            return
        if self.closed:
            if side.transport is not None:
                side.transport.abort()
            return
        self.server = side
        assert side.transport is not None
        for chunk in self.early:
            side.transport.write(chunk)
        self.early.clear()

    def sides(self) -> list[_Side]:
        return [s for s in (self.client, self.server) if s is not None]

    def close(self, *, graceful: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy._connections.discard(self)
        for side in self.sides():
            if side.transport is None:
                continue
            if graceful:
                side.transport.close()
            else:
                sock = side.transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        # linger on, timeout 0: close() sends RST instead of FIN
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                side.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``host``:``upstream_port``."""

    def __init__(self, host: str, upstream_port: int, *, rcvbuf: int | None = None) -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.rcvbuf = rcvbuf
        self.port = 0
        self.upstream_paused = False  # client -> server stopped
        self.downstream_paused = False  # server -> client stopped
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self) -> TcpProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf is not None:
            # Set on the listener so accepted sockets start with a small window.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.get_running_loop().create_server(self._accept, sock=sock)
        return self

    def _accept(self) -> _Side:
        conn = _Connection(self)
        self._connections.add(conn)
        self.accepted += 1
        conn.task = asyncio.get_running_loop().create_task(conn.connect_upstream())
        return conn.client

    def reset_all(self) -> int:
        """RST both sides of every open connection; returns how many were reset."""
        conns = list(self._connections)
        for conn in conns:
            conn.close(graceful=False)
        return len(conns)

    def pause(self, *, upstream: bool = True, downstream: bool = True) -> None:
        """Stop forwarding (both directions by default); sockets stay open."""
        self.upstream_paused = self.upstream_paused or upstream
        self.downstream_paused = self.downstream_paused or downstream
        self._apply()

    def resume(self) -> None:
        self.upstream_paused = False
        self.downstream_paused = False
        self._apply()

    def _apply(self) -> None:
        for conn in list(self._connections):
            for side in conn.sides():
                side.apply_pause()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset_all()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
