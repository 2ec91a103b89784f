"""The only module that knows picows: listening, the peer address, and server frames.

Everything else in the server sees picows' ``WSTransport`` (re-exported here) through
three operations: write whole frames (``underlying_transport.write``), disconnect,
and the write-buffer size.
Swapping the transport library means rewriting this file only.

Server-to-client frames are never masked (RFC 6455 5.1), so a frame is a 2-10
byte header plus the payload; building it here once lets the fan-out path write
the same bytes to every subscriber.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

from picows import (
    WSAutoPingStrategy,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]

from staywire.protocol.codes import valid_close_code
from staywire.server.listen_socket import BACKLOG

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PONG",
    "OP_TEXT",
    "Request",
    "Response",
    "WSFrame",
    "WSListener",
    "WSMsgType",
    "WSTransport",
    "accept",
    "close_frame",
    "close_reply",
    "code_value",
    "data_frame",
    "listen",
    "reject",
    "text_frame",
]

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PONG = 0xA

Request = WSUpgradeRequest
Response = WSUpgradeResponse

_pack_h = struct.Struct("!BBH").pack
_pack_q = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, final text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return _pack_h(0x81, 126, n) + payload
    return _pack_q(0x81, 127, n) + payload


def data_frame(opcode: int, payload: bytes) -> bytes:
    """A complete, unmasked, final frame of any data opcode."""
    n = len(payload)
    b0 = 0x80 | opcode
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return _pack_h(b0, 126, n) + payload
    return _pack_q(b0, 127, n) + payload


def code_value(code: object) -> int:
    """A close code as an int: picows gives a ``WSCloseCode`` for known codes, an int
    for the others."""
    value = getattr(code, "value", code)
    return value if isinstance(value, int) else 0


def close_reply(code: int) -> bytes:
    """The close frame that answers a received close with ``code`` (0: it had none).

    RFC 6455 5.5.1: echo the code; a close without a code gets an empty close; a code
    reserved for reporting or unassigned (7.4) gets 1002."""
    if not code:
        return b"\x88\x00"
    if not valid_close_code(code):
        return close_frame(1002, "invalid close code")
    return close_frame(code, "")


def close_frame(code: int, reason: str) -> bytes:
    """A close frame; the reason is cut to fit the 125-byte control-frame limit (RFC 6455 5.5)."""
    body = struct.pack("!H", code) + reason.encode("utf-8")[:123]
    return bytes((0x88, len(body))) + body


def accept(listener: WSListener, subprotocol: str | None) -> WSUpgradeResponseWithListener:
    headers = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(headers), listener)


def reject(status: int, body: str) -> WSUpgradeResponseWithListener:
    return WSUpgradeResponseWithListener(
        WSUpgradeResponse.create_error_response(status, body.encode()), None
    )


def respond(status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> WSUpgradeResponseWithListener:
    """A plain HTTP response on the WebSocket port (health checks, static files)."""
    extra = {"Content-Type": content_type, "Cache-Control": "no-cache"}
    if headers:
        extra.update(headers)
    if status < 400:
        resp = WSUpgradeResponse.create_ok_response(body, extra)
    else:
        resp = WSUpgradeResponse.create_error_response(status, body, extra)
    return WSUpgradeResponseWithListener(resp, None)


# The router gets the request and the TCP peer address; picows' own factory gets only
# the request, so each protocol instance carries its peer and hands it over.
Router = Callable[[WSUpgradeRequest, str], Any]


class _PeerProtocol(WSProtocol):  # type: ignore[misc]
    """picows' protocol, knowing its TCP peer so the router can see it.

    Slots, and the router called through a bound method that picows drops after the
    handshake: a per-connection closure and ``__dict__`` cost memory on every idle
    connection."""

    __slots__ = ("peer", "router")

    def __init__(self, router: Router, logger: Any, handshake_timeout: float,
                 max_frame_size: int, read_buffer_size: int) -> None:
        self.peer = "?"
        self.router = router
        super().__init__(
            None, None, False, self._route, logger,
            True,  # disconnect_on_exception: the listener maps its own failures to 1011
            handshake_timeout,
            False, 20.0, 20.0, WSAutoPingStrategy.PING_WHEN_IDLE,  # heartbeats are ours
            # No auto-pong: picows would answer pings that arrive after a close frame (RFC
            # 6455 5.5.1 forbids it); the listeners answer them while the connection is open.
            False,
            max_frame_size,
            None,
            read_buffer_size,
        )

    def _route(self, request: WSUpgradeRequest) -> Any:
        _accept_connection_list(request)
        return self.router(request, self.peer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        addr = transport.get_extra_info("peername")
        self.peer = addr[0] if isinstance(addr, tuple) else str(addr)
        super().connection_made(transport)


def _accept_connection_list(request: WSUpgradeRequest) -> None:
    """``Connection`` is a comma-separated, case-insensitive token list (RFC 9110 7.6.1):
    Firefox and some proxies send ``keep-alive, Upgrade``. picows 2.3.1 compares the
    whole value to "upgrade" and answers 400. It validates the request after calling
    the router with it, so a list holding the ``upgrade`` token is narrowed to that
    token here, once per handshake; anything else is left for picows to refuse.
    tests/server/test_handshake.py holds picows to that order."""
    headers = request.headers
    values = headers.getall("Connection", ())
    if len(values) == 1 and values[0].lower() == "upgrade":
        return
    tokens = {t.strip().lower() for v in values for t in v.split(",")}
    if "upgrade" in tokens:
        headers["Connection"] = "Upgrade"


# picows builds a logging.Logger per connection when given a Logger; a LoggerAdapter is
# used as is, which saves that per-connection allocation (memory per idle connection).
_picows_log = logging.LoggerAdapter(logging.getLogger("staywire.picows"), {})


async def listen(
    router: Router,
    host: str,
    port: int,
    *,
    max_frame_size: int,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = 10.0,
    read_buffer_size: int = 1024,
    sock: socket.socket | None = None,
) -> asyncio.Server:
    """Serve WebSockets on ``host``:``port``, or on ``sock`` when it is given: a socket
    that ``listen_socket.bind_early`` bound and listens on already."""
    loop = asyncio.get_running_loop()

    def protocol_factory() -> WSProtocol:
        return _PeerProtocol(router, _picows_log, handshake_timeout, max_frame_size,
                             read_buffer_size)

    if sock is not None:
        return await loop.create_server(protocol_factory, sock=sock, ssl=ssl_context,
                                        backlog=BACKLOG)
    return await loop.create_server(protocol_factory, host, port, ssl=ssl_context,
                                    reuse_address=True, backlog=BACKLOG)
