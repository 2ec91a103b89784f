"""One WebSocket connection over picows: frames in, bytes out, and how it ended.

Why a thin wrapper: the client's logic (auth, requests, recovery) must not know
about picows frames, fragmentation or close handshakes, and everything the
client needs from a connection fits in five operations: send, close, abort,
buffered bytes and the close that ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Mapping

from picows import WSAutoPingStrategy, WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport
# Not in picows' public API (nor its stubs); pinned with picows in pyproject.toml.
from picows.picows import WSProtocol  # type: ignore[attr-defined]
from picows.url import parse_url

from staywire.client.state import CloseInfo
from staywire.protocol.codes import CloseCode, valid_close_code
from staywire.protocol.envelope import SUBPROTOCOL, SUBPROTOCOL_V2
from staywire.protocol.framing import OP_TEXT, CloseConnection, CloseFence, MessageAssembler
from staywire.protocol.ratelimit import Pacer

__all__ = ["OFFER", "SUBPROTOCOL", "Link", "open_link"]

# What the client offers: protocol v2 (binary frames) first, v1 for an older server.
OFFER = f"{SUBPROTOCOL_V2}, {SUBPROTOCOL}"

log = logging.getLogger("staywire.client")

NO_STATUS = 1005  # RFC 6455: a close frame without a code
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # what the client accepts from a server
ABNORMAL = 1006  # RFC 6455: no close frame at all


class Link:
    """A connected WebSocket; ``closed`` resolves with the ``CloseInfo`` once it is gone."""

    def __init__(
        self,
        on_text: Callable[[Link, bytes], None],
        on_writable: Callable[[], None],
        on_binary: Callable[[Link, bytes], None] | None = None,
    ) -> None:
        self._on_text = on_text
        self._on_binary = on_binary
        self._on_writable = on_writable
        self.transport: WSTransport | None = None
        self.closed: asyncio.Future[CloseInfo] = asyncio.get_running_loop().create_future()
        self._close: CloseInfo | None = None  # decided locally (abort, close) or received
        self._close_sent = False
        self.writing_paused = False
        # Pays for every frame sent, under the limits the server's welcome announced; the
        # publisher waits on it (None: no pacing).
        self.pacer: Pacer | None = None
        self._waiting: deque[bytes] = deque()  # send_paced frames waiting for their turn
        self._wait_timer: asyncio.TimerHandle | None = None
        self.subprotocol: str | None = None  # what the server selected

    @property
    def binary(self) -> bool:
        """Protocol v2 was selected: binary data may be sent and received."""
        return self.subprotocol == SUBPROTOCOL_V2

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.closed.done() and self._close is None

    @property
    def buffered_amount(self) -> int:
        """Bytes written but still in the socket's user-space write buffer."""
        if self.transport is None or self.closed.done():
            return 0
        return int(self.transport.underlying_transport.get_write_buffer_size())

    def send(self, payload: bytes) -> bool:
        """Send one text frame; ``False`` when the link is closing or gone."""
        return self._write(WSMsgType.TEXT, payload)

    def send_paced(self, payload: bytes) -> None:
        """Send one text frame when the pacer allows, after those already waiting: for
        requests a burst of which would be refused (resubscribing to many channels after
        a reconnect). Frames still waiting when the link ends go with it."""
        if self.pacer is None or (not self._waiting and self._turn(len(payload)) == 0):
            self.send(payload)
            return
        self._waiting.append(payload)
        if self._wait_timer is None:
            self._release_waiting()

    def _turn(self, size: int) -> float:
        assert self.pacer is not None
        return self.pacer.delay(asyncio.get_running_loop().time(), size)

    def _release_waiting(self) -> None:
        self._wait_timer = None
        while self._waiting and self.is_open:
            wait = self._turn(len(self._waiting[0]))
            if wait > 0:
                self._wait_timer = asyncio.get_running_loop().call_later(
                    wait, self._release_waiting)
                return
            self.send(self._waiting.popleft())

    def send_binary(self, payload: bytes) -> bool:
        """Send one binary frame (protocol v2's binary data; conformance runs)."""
        return self._write(WSMsgType.BINARY, payload)

    def _write(self, kind: WSMsgType, payload: bytes) -> bool:
        if not self.is_open:
            return False
        assert self.transport is not None
        if self.pacer is not None:  # every frame pays, whether or not it waited its turn
            self.pacer.charge(asyncio.get_running_loop().time(), len(payload))
        self.transport.send(kind, payload)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake; the transport is dropped when the server answers."""
        if self.transport is None or self.closed.done():
            return
        if self._close is None:
            self._close = CloseInfo(code, reason)
        self._send_close(code, reason)

    def abort(self, code: int = ABNORMAL, reason: str = "") -> None:
        """Drop the connection now, without a close handshake and without waiting for TCP.

        This is the only way out of a black-holed link: a graceful close would wait
        for acknowledgements that will never come."""
        if self._close is None:
            self._close = CloseInfo(code, reason)
        if self.transport is not None:
            self.transport.disconnect(graceful=False)
        elif not self.closed.done():
            self.closed.set_result(self._close)

    @property
    def close_sent(self) -> bool:
        """This side's close frame is out (by us, or by picows on a parser error)."""
        return self._close_sent or (self.transport is not None
                                    and self.transport.is_close_frame_sent)

    def _send_close(self, code: int | None, reason: str = "") -> None:
        """The one close frame this side sends: nothing may follow it (RFC 6455 5.5.1).

        ``None``: an empty close, the answer to a close without a code (picows'
        ``send_close`` always writes a code, and its NO_INFO is 0)."""
        if self.close_sent or self.transport is None:
            return
        self._close_sent = True
        if code is None:
            self.transport.send(WSMsgType.CLOSE, b"")
        else:
            self.transport.send_close(WSCloseCode(code), reason.encode())

    # -- called by the listener ------------------------------------------------------

    def _connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def _received_close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = CloseInfo(code, reason)

    def _disconnected(self) -> None:
        self._waiting.clear()
        if self._wait_timer is not None:
            self._wait_timer.cancel()
            self._wait_timer = None
        if not self.closed.done():
            self.closed.set_result(self._close or CloseInfo(ABNORMAL, "connection lost"))
        self._on_writable()  # wake publishers waiting for the buffer to drain

    def _pause(self) -> None:
        self.writing_paused = True

    def _resume(self) -> None:
        self.writing_paused = False
        self._on_writable()


class _Listener(WSListener):
    """Feeds picows frames into a ``Link``: whole messages, close, pings, flow control.

    Data frames go through ``MessageAssembler``, the same RFC 6455 message rules the
    server runs (reassembly within ``max_message_size``, UTF-8, RSV bits, continuation
    order); a violation closes the connection with the code it names."""

    def __init__(self, link: Link, max_message_size: int) -> None:
        super().__init__()
        self._link = link
        self._assembler = MessageAssembler(max_message_size)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._link._connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.CLOSE:
            self._on_close(transport, frame)
            return
        if self._link.close_sent:
            return  # closing: nothing more is answered or delivered (RFC 6455 5.5.1)
        if kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if kind is WSMsgType.PONG:
            return
        try:
            message = self._assembler.assemble(
                kind.value, frame.fin, bool(frame.rsv1 or frame.rsv2 or frame.rsv3),
                frame.get_payload_as_bytes())
        except CloseConnection as exc:
            self._link._received_close(int(exc.code), exc.reason)
            self._link._send_close(int(exc.code), exc.reason)
            transport.disconnect()
            return
        if message is None:
            return
        opcode, payload = message
        if opcode == OP_TEXT:
            self._link._on_text(self._link, payload)
        elif self._link._on_binary is not None:
            self._link._on_binary(self._link, payload)
        # Otherwise binary messages are reserved by the protocol and ignored.

    def _on_close(self, transport: WSTransport, frame: WSFrame) -> None:
        code = int(frame.get_close_code().value) if frame.payload_size >= 2 else NO_STATUS
        try:
            reason = frame.get_close_reason() or ""
        except UnicodeDecodeError:
            reason = ""
        if frame.payload_size >= 2 and not valid_close_code(code):
            # 1005, 1006, 1015 and unassigned codes never travel on the wire (RFC 6455 7.4).
            self._link._received_close(int(CloseCode.PROTOCOL_ERROR), "invalid close code")
            self._link._send_close(int(CloseCode.PROTOCOL_ERROR))
            transport.disconnect()
            return
        self._link._received_close(code, reason)
        # Echo the code, as RFC 6455 section 5.5.1 asks; no code gets an empty close.
        self._link._send_close(code if frame.payload_size >= 2 else None)
        transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._link._disconnected()

    def pause_writing(self) -> None:
        self._link._pause()

    def resume_writing(self) -> None:
        self._link._resume()


class _FencedProtocol(WSProtocol):  # type: ignore[misc]
    """picows' client protocol behind a ``CloseFence``: the frame parser never sees bytes
    after the server's close frame (a second close in the same read would fail picows'
    one-frame look-ahead with 1002 before the first close is echoed)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._fence = CloseFence()
        self._view = memoryview(b"")

    def get_buffer(self, size_hint: int) -> memoryview:
        self._view = super().get_buffer(size_hint)
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        admitted = self._fence.admit(self._view[:nbytes])
        if admitted:
            super().buffer_updated(admitted)


async def _ws_connect(url: str, listener: Callable[[], WSListener], *,
                      headers: Mapping[str, str], timeout: float | None,
                      max_frame_size: int, ssl_context: ssl.SSLContext | None) -> WSTransport:
    """What ``picows.ws_connect`` does for a direct connection, with ``_FencedProtocol``.

    Not carried over: HTTP redirects (a 30x fails the connect like any other status),
    proxies, and aiofastnet (the loop's own transport is used)."""
    parsed = parse_url(url)
    logger = logging.getLogger("picows.staywire.client.picows")  # the name ws_connect gave it

    def protocol() -> _FencedProtocol:
        return _FencedProtocol(
            parsed.netloc, parsed.resource_name, True, listener, logger,
            True,  # disconnect when a listener callback raises
            timeout,
            False, 10.0, 10.0, WSAutoPingStrategy.PING_WHEN_IDLE,  # the client pings itself
            # Pings are answered by the listener: picows' auto-pong would also answer
            # pings that arrive after a close frame.
            False,
            max_frame_size, dict(headers), 16 * 1024)

    loop = asyncio.get_running_loop()
    tls: ssl.SSLContext | bool | None = None
    if parsed.is_secure:
        tls = ssl_context if ssl_context is not None else True  # True: the default context
    raw, proto = await loop.create_connection(protocol, parsed.host, parsed.port, ssl=tls)
    try:
        await proto.wait_until_handshake_complete()
        if proto.listener is None:  # the server hung up before it answered the upgrade
            raise ConnectionResetError("connection closed before the upgrade response")
    except BaseException:
        raw.abort()
        raise
    transport: WSTransport = proto.transport
    return transport


async def open_link(
    url: str,
    *,
    on_text: Callable[[Link, bytes], None],
    on_writable: Callable[[], None],
    headers: Mapping[str, str],
    timeout: float | None,
    write_buffer_limits: tuple[int, int] | None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    on_binary: Callable[[Link, bytes], None] | None = None,
    subprotocol: str | None = SUBPROTOCOL,
    ssl_context: ssl.SSLContext | None = None,
) -> Link:
    """Connect and complete the WebSocket handshake within ``timeout`` seconds."""
    link = Link(on_text, on_writable, on_binary)
    offer = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else {}
    transport = await _ws_connect(url, lambda: _Listener(link, max_message_size),
                                  headers={**offer, **headers}, timeout=timeout,
                                  max_frame_size=max_message_size, ssl_context=ssl_context)
    if link.transport is None:  # pragma: no cover - picows calls on_ws_connected first
        link._connected(transport)
    if subprotocol:
        selected = transport.response.headers.get("Sec-WebSocket-Protocol")
        link.subprotocol = selected.strip() if selected else None
    # picows stores a protocol error on the transport's disconnect future; nobody else
    # awaits it, so retrieve it here (else asyncio logs "exception was never retrieved").
    watcher = asyncio.ensure_future(transport.wait_disconnected())
    watcher.add_done_callback(lambda f: f.cancelled() or f.exception())
    if write_buffer_limits is not None:
        high, low = write_buffer_limits
        with contextlib.suppress(AttributeError, NotImplementedError):
            transport.underlying_transport.set_write_buffer_limits(high=high, low=low)
    return link
