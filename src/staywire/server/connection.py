"""One client connection: frames in, frames out, closing, deadlines.

It moves bytes and calls the protocol core: frames go through ``InboundGuard``
(limits, validation), transitions through ``ConnectionStateMachine``, deadlines
through ``ServerHeartbeat``. What each request does is decided by the node's request
handlers (``requests.py``), reached through the ``NodeContext`` it is given: the
connection holds its own state and nothing of the node's. There is no task per
connection, so an idle connection costs its objects and buffers only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from typing import Any, Protocol

from staywire.brokers.base import Publication
from staywire.config import Config
from staywire.protocol.codes import CloseCode, ErrorCode, valid_close_code
from staywire.protocol.envelope import Auth, encode
from staywire.protocol.heartbeat import ServerHeartbeat, HeartbeatAction
from staywire.protocol.inbound import CloseConnection, InboundGuard, Limits, Reject, Request
from staywire.protocol.state import ConnectionStateMachine, ConnState
from staywire.server.auth import Identity
from staywire.server.hub import Hub
from staywire.server.metrics import Stats
from staywire.server.transport import (
    OP_PONG,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    close_frame,
    close_reply,
    code_value,
    data_frame,
    text_frame,
)

__all__ = ["Connection", "NodeContext"]

log = logging.getLogger("staywire.server")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING


class Handlers(Protocol):
    """The node's request handlers, as a connection calls them."""

    def dispatch(self, conn: Connection, request: Request) -> None: ...
    def submit(self, conn: Connection, request: Request | None) -> None: ...
    def detach(self, conn: Connection) -> None: ...
    def expired(self, conn: Connection, wall: float) -> None: ...


class Table(Protocol):
    def opened(self, conn: Connection) -> None: ...
    def closed(self, conn: Connection) -> None: ...


class Hooks(Protocol):
    def closed(self, conn: Connection) -> None: ...


class NodeContext:
    """What every connection of a node shares: settings, counters, the hub, the handlers.

    One object per node, made when it starts; a connection keeps one reference to it."""

    __slots__ = ("config", "limits", "stats", "hub", "handlers", "table", "hooks")

    def __init__(self, config: Config, limits: Limits, stats: Stats, hub: Hub,
                 handlers: Handlers, table: Table, hooks: Hooks) -> None:
        self.config = config
        self.limits = limits
        self.stats = stats
        self.hub = hub
        self.handlers = handlers
        self.table = table
        self.hooks = hooks


class Connection(WSListener):
    """The server side of one WebSocket connection."""

    __slots__ = (
        "node", "transport", "ip", "id", "session", "requested_session", "token",
        "identity", "sm", "hb", "guard", "subs", "recovering", "out", "out_size",
        "queue", "worker", "opened_at", "auth_deadline", "close_deadline", "close_code",
        "close_reason", "resumed", "user_data", "final_saved", "allowance", "headers",
        "presence_info", "auth_follows", "binary",
    )

    def __init__(self, node: NodeContext, ip: str, token: str | None, session: str | None,
                 headers: dict[str, str] | None = None, *, auth_follows: bool = False,
                 binary: bool = False) -> None:
        self.node = node
        # Protocol v2 was selected: binary frames in both directions (protocol/binary.py).
        self.binary = binary
        self.transport: WSTransport | None = None
        self.ip = ip
        self.id = secrets.token_hex(8)
        self.session = ""
        self.requested_session = session
        self.token = token
        # ``?auth=message``: the client's first message is its token, so it is neither
        # welcomed as anonymous nor put to the connect proxy before that message comes.
        self.auth_follows = auth_follows
        self.identity: Identity | None = None
        self.sm = ConnectionStateMachine()
        self.hb: ServerHeartbeat | None = None
        self.guard: InboundGuard | None = None  # made at the first message: idle costs less
        self.subs: dict[str, Any] = {}
        self.recovering: dict[str, list[Publication]] | None = None
        self.out: list[bytes] = []
        self.out_size = 0
        self.queue: deque[Request | None] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.opened_at = 0.0
        self.auth_deadline: float | None = None
        self.close_deadline: float | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.resumed = False
        self.user_data: dict[str, Any] = {}  # for the application's hooks
        self.final_saved = False
        # Bytes a recovery replay may add above max_send_buffer: history is bounded, and a
        # client must be able to recover a channel whose history is larger than the bound.
        self.allowance = 0
        # The upgrade's allow-listed headers (proxy_forward_headers), forwarded to the
        # application's backend; None unless a proxy is configured.
        self.headers = headers
        # What presence shows of this connection (``info``): the connect proxy's data
        # when it is small (server/presence.py MAX_INFO), else None.
        self.presence_info: bytes | None = None

    # ------------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        # picows keeps the upgrade request and response (headers included) for the
        # connection's whole life; everything needed from them was read by the router.
        # Dropping the headers saves about 1.5 KiB per idle connection.
        transport.request.headers.clear()
        transport.response.headers.clear()
        now = time.monotonic()
        self.opened_at = now
        node = self.node
        cfg = node.config
        self.hb = ServerHeartbeat(cfg.ping_interval, cfg.pong_timeout, now)
        self.sm.advance(ConnState.AUTHENTICATING)
        node.table.opened(self)
        if self.token is not None:
            token, self.token = self.token, None
            node.handlers.submit(self, Auth(token=token))
        elif (cfg.allow_anonymous or cfg.connect_proxy_url) and not self.auth_follows:
            node.handlers.submit(self, None)  # ask the backend, or welcome as anonymous
        else:
            self.auth_deadline = now + cfg.auth_timeout

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        op = frame.msg_type
        if op is _CLOSE:
            self._on_close_frame(frame)
            return
        if op is not _TEXT and op is not _BINARY and op is not _CONT:
            self.hb.last_seen = time.monotonic()  # type: ignore[union-attr]
            if op is _PING and self.sm.state < ConnState.CLOSING:
                self.enqueue(data_frame(OP_PONG, frame.get_payload_as_bytes()))  # RFC 6455 5.5.2
            return
        state = self.sm.state
        if state >= ConnState.CLOSING:
            return
        now = time.monotonic()
        self.hb.last_seen = now  # type: ignore[union-attr]
        payload = frame.get_payload_as_bytes()
        node = self.node
        stats = node.stats
        stats.bytes_in += len(payload)
        guard = self.guard
        if guard is None:
            guard = self.guard = InboundGuard(node.limits, now, binary=self.binary)
        try:
            request = guard.feed(op.value, frame.fin, frame.rsv1 or frame.rsv2 or frame.rsv3,
                                 payload, now)
        except Reject as exc:
            stats.messages_in += 1
            if exc.code is ErrorCode.RATE_LIMITED:
                stats.rate_limited += 1
            else:
                stats.invalid_messages += 1
            self.send_error(exc.code, exc.reason, exc.request_id)
            return
        except CloseConnection as exc:
            self.close(exc.code, exc.reason)
            return
        if request is None:
            return
        stats.messages_in += 1
        node.handlers.dispatch(self, request)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.sm.state == ConnState.CLOSED:
            return
        if self.close_code is None:
            handshake = transport.close_handshake
            info = None
            if handshake is not None:
                info = handshake.sent or handshake.recv
            if info is not None:
                self.close_code = code_value(info.code)
                self.close_reason = info.reason
            else:
                self.close_code = int(CloseCode.ABNORMAL)
        self.sm.advance(ConnState.CLOSED)
        node = self.node
        node.handlers.detach(self)
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()
        self.out.clear()
        node.table.closed(self)
        node.hooks.closed(self)

    # ------------------------------------------------------------------ output

    def enqueue(self, frame: bytes) -> None:
        """Queue a whole frame; it is written at the end of this event-loop tick.

        Nothing is queued once the close frame is out (RFC 6455 5.5.1): a worker still
        finishing a request of a closing connection must not write after it."""
        if self.sm.state >= ConnState.CLOSING:
            return
        out = self.out
        if not out:
            self.node.hub.mark_dirty(self)
        out.append(frame)
        self.out_size += len(frame)
        if self.out_size > self.node.config.max_send_buffer + self.allowance:
            self.slow_consumer()

    def flush(self) -> None:
        out = self.out
        if not out or self.transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        stats = self.node.stats
        stats.messages_out += len(out)
        stats.bytes_out += len(data)
        self.out = []
        self.out_size = 0
        tr = self.transport.underlying_transport
        if tr.is_closing():
            return
        tr.write(data)
        buffered = tr.get_write_buffer_size()
        limit = self.node.config.max_send_buffer
        if buffered > limit + self.allowance:
            self.slow_consumer()
        elif buffered <= limit:
            self.allowance = 0  # any recovery replay has left the buffer

    def send(self, obj: dict[str, Any]) -> None:
        self.enqueue(text_frame(encode(obj)))

    def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None,
                   channel: str | None = None) -> None:
        """An ``error`` reply: to the request ``request_id``, or about ``channel``."""
        msg: dict[str, Any] = {"type": "error"}
        if request_id is not None:
            msg["id"] = request_id
        msg["code"] = code.value
        msg["reason"] = reason
        if channel is not None:
            msg["channel"] = channel
        self.send(msg)

    def slow_consumer(self) -> None:
        if self.sm.state >= ConnState.CLOSING:
            return
        self.node.stats.slow_consumer_closes += 1
        # Nothing more is queued for it; the close frame may sit behind the backlog, so
        # close_deadline aborts the socket if the peer never reads that far.
        self.out.clear()
        self.out_size = 0
        self.close(CloseCode.SLOW_CONSUMER)

    # ------------------------------------------------------------------ closing

    def close(self, code: CloseCode | int, reason: str | None = None) -> None:
        """Start the closing handshake: close frame now, TCP drop after ``close_timeout``."""
        if self.sm.state >= ConnState.CLOSING or self.transport is None:
            return
        code = int(code)
        if reason is None:
            try:
                reason = CloseCode(code).reason
            except ValueError:
                reason = ""
        self.close_code = code
        self.close_reason = reason
        self.sm.advance(ConnState.CLOSING)
        self.node.handlers.detach(self)
        self.out.append(close_frame(code, reason))
        self.flush()
        self.close_deadline = time.monotonic() + self.node.config.close_timeout

    def _on_close_frame(self, frame: WSFrame) -> None:
        assert self.transport is not None
        if self.sm.state >= ConnState.CLOSING:
            # The answer to our close: the server closes TCP first (RFC 6455 7.1.1).
            self.transport.disconnect()
            return
        code_int = code_value(frame.get_close_code())
        if code_int and not valid_close_code(code_int):
            self.close_code = int(CloseCode.PROTOCOL_ERROR)
            self.close_reason = f"invalid close code {code_int}"
        else:
            self.close_code = code_int or int(CloseCode.NORMAL)
            try:
                self.close_reason = frame.get_close_reason()
            except UnicodeDecodeError:  # pragma: no cover - picows rejects it before us
                self.close_reason = ""
        self.sm.advance(ConnState.CLOSING)
        self.node.handlers.detach(self)
        self.out.append(close_reply(code_int))
        self.flush()
        self.transport.disconnect()

    def tick(self, now: float, wall: float) -> None:
        """Called by the server's sweeper: heartbeats, auth timeout, token expiry, close timeout."""
        state = self.sm.state
        if state >= ConnState.CLOSING:
            if self.close_deadline is not None and now >= self.close_deadline:
                assert self.transport is not None
                self.transport.disconnect(graceful=False)
            return
        hb = self.hb
        assert hb is not None
        action = hb.poll(now)
        if action is HeartbeatAction.DEAD:
            self.close(CloseCode.HEARTBEAT_TIMEOUT)
            return
        if action is HeartbeatAction.PING:
            self.enqueue(text_frame(b'{"type":"ping","t":%d}' % int(wall * 1000)))
        if state == ConnState.AUTHENTICATING:
            if self.auth_deadline is not None and now >= self.auth_deadline:
                self.close(CloseCode.AUTH_TIMEOUT)
        elif self.identity is not None and self.identity.expires_at is not None:
            if wall >= self.identity.expires_at:
                node = self.node
                if node.config.refresh_proxy_url:
                    node.handlers.expired(self, wall)  # the backend may extend it
                else:
                    self.close(CloseCode.TOKEN_EXPIRED)

    def drain(self, reconnect_in_ms: int) -> None:
        if self.sm.state >= ConnState.CLOSING:
            return
        self.send({"type": "drain", "reconnect_in_ms": reconnect_in_ms})
        loop = asyncio.get_running_loop()
        loop.call_later(reconnect_in_ms / 1000, self.close, CloseCode.SERVICE_RESTART)
