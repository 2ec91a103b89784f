"""One client connection: the asyncio driver around the protocol core.

It moves bytes and calls the core: frames go through ``InboundGuard`` (limits,
validation), transitions through ``ConnectionStateMachine``, deadlines through
``Heartbeat``. There is no task per connection: requests that can be answered
at once are answered in the frame callback; the others (auth, sub, rpc, and
anything on a broker that must be awaited) go to a short-lived worker task
that drains the connection's request queue in order and then ends, so an idle
connection owns no task, and a connection's requests are handled in the order
they were sent (a client's publishes keep their order).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from staywire.brokers.base import Publication, StreamPosition
from staywire.exceptions import AuthError, BrokerUnavailable, TokenExpired
from staywire.protocol.codes import CloseCode, ErrorCode, valid_close_code
from staywire.protocol.envelope import Auth, Inbound, Ping, Pong, Pub, Rpc, Sub, Unsub, encode
from staywire.protocol.heartbeat import Heartbeat, HeartbeatAction
from staywire.protocol.inbound import CloseConnection, InboundGuard, Reject
from staywire.protocol.recovery import is_recovered, merge_live
from staywire.protocol.state import ConnectionStateMachine, ConnState
from staywire.server.auth import Identity
from staywire.server.transport import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    OP_PONG,
    close_frame,
    data_frame,
    text_frame,
)

if TYPE_CHECKING:
    from staywire.server.app import Server

__all__ = ["Connection"]

log = logging.getLogger("staywire.server")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING
_RECOVERING = object()


class _SessionRecord(msgspec.Struct):
    user: str
    subs: dict[str, tuple[str, int]] = {}


_session_decoder = msgspec.json.Decoder(_SessionRecord)


class Connection(WSListener):
    """The server side of one WebSocket connection."""

    __slots__ = (
        "server", "transport", "ip", "id", "session", "requested_session", "token",
        "identity", "sm", "hb", "guard", "subs", "recovering", "out", "out_size",
        "queue", "worker", "opened_at", "auth_deadline", "close_deadline", "close_code",
        "close_reason", "resumed", "user_data", "final_saved",
    )

    def __init__(self, server: Server, ip: str, token: str | None, session: str | None) -> None:
        self.server = server
        self.transport: WSTransport | None = None
        self.ip = ip
        self.id = secrets.token_hex(8)
        self.session = ""
        self.requested_session = session
        self.token = token
        self.identity: Identity | None = None
        self.sm = ConnectionStateMachine()
        self.hb: Heartbeat | None = None
        self.guard: InboundGuard | None = None  # made at the first message: idle costs less
        self.subs: dict[str, Any] = {}
        self.recovering: dict[str, list[Publication]] | None = None
        self.out: list[bytes] = []
        self.out_size = 0
        self.queue: deque[Inbound] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.opened_at = 0.0
        self.auth_deadline: float | None = None
        self.close_deadline: float | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.resumed = False
        self.user_data: dict[str, Any] = {}  # for the application's hooks
        self.final_saved = False

    # ------------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        now = time.monotonic()
        self.opened_at = now
        self.hb = Heartbeat(self.server.config.ping_interval, self.server.config.pong_timeout, now)
        self.sm.advance(ConnState.AUTHENTICATING)
        self.server.connection_opened(self)
        if self.token is not None:
            token, self.token = self.token, None
            self.submit(Auth(token=token))
        elif self.server.config.allow_anonymous:
            self.submit(None)  # welcome as anonymous
        else:
            self.auth_deadline = now + self.server.config.auth_timeout

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
        stats = self.server.stats
        stats.bytes_in += len(payload)
        guard = self.guard
        if guard is None:
            guard = self.guard = InboundGuard(self.server.limits, now)
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
        self.dispatch(request)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.sm.state == ConnState.CLOSED:
            return
        if self.close_code is None:
            handshake = transport.close_handshake
            info = None
            if handshake is not None:
                info = handshake.sent or handshake.recv
            if info is not None:
                self.close_code = int(info.code.value if hasattr(info.code, "value")
                                      else info.code)
                self.close_reason = info.reason
            else:
                self.close_code = int(CloseCode.ABNORMAL)
        self.sm.advance(ConnState.CLOSED)
        self._detach()
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()
        self.out.clear()
        self.server.connection_closed(self)

    # ------------------------------------------------------------------ output

    def enqueue(self, frame: bytes) -> None:
        """Queue a whole frame; it is written at the end of this event-loop tick."""
        out = self.out
        if not out:
            self.server.hub.mark_dirty(self)
        out.append(frame)
        self.out_size += len(frame)
        if self.out_size > self.server.config.max_send_buffer:
            self._slow_consumer()

    def flush(self) -> None:
        out = self.out
        if not out or self.transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        stats = self.server.stats
        stats.messages_out += len(out)
        stats.bytes_out += len(data)
        self.out = []
        self.out_size = 0
        tr = self.transport.underlying_transport
        if tr.is_closing():
            return
        tr.write(data)
        if tr.get_write_buffer_size() > self.server.config.max_send_buffer:
            self._slow_consumer()

    def send(self, obj: dict[str, Any]) -> None:
        if self.sm.state >= ConnState.CLOSING:
            return
        self.enqueue(text_frame(encode(obj)))

    def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None) -> None:
        msg: dict[str, Any] = {"type": "error"}
        if request_id is not None:
            msg["id"] = request_id
        msg["code"] = code.value
        msg["reason"] = reason
        self.send(msg)

    def deliver(self, pub: Publication, frame: bytes) -> None:
        """Fan-out entry point: the frame is shared by every subscriber."""
        recovering = self.recovering
        if recovering is not None:
            buffered = recovering.get(pub.channel)
            if buffered is not None:
                buffered.append(pub)
                return
        if self.sm.state < ConnState.CLOSING:
            self.enqueue(frame)

    def _slow_consumer(self) -> None:
        if self.sm.state >= ConnState.CLOSING:
            return
        self.server.stats.slow_consumer_closes += 1
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
        self._detach()
        self.out.append(close_frame(code, reason))
        self.flush()
        self.close_deadline = time.monotonic() + self.server.config.close_timeout

    def _on_close_frame(self, frame: WSFrame) -> None:
        assert self.transport is not None
        if self.sm.state >= ConnState.CLOSING:
            # The answer to our close: the server closes TCP first (RFC 6455 7.1.1).
            self.transport.disconnect()
            return
        code = frame.get_close_code()
        code_int = int(code.value if hasattr(code, "value") else code)
        if code_int and not valid_close_code(code_int):
            self.close(CloseCode.PROTOCOL_ERROR, f"invalid close code {code_int}")
            self.transport.disconnect()
            return
        self.close_code = code_int if code_int else int(CloseCode.NORMAL)
        try:
            self.close_reason = frame.get_close_reason()
        except UnicodeDecodeError:  # pragma: no cover - picows rejects it before us
            self.close_reason = ""
        self.sm.advance(ConnState.CLOSING)
        self._detach()
        # Echo the code (RFC 6455 5.5.1); a close without a code gets an empty close.
        self.out.append(close_frame(code_int, "") if code_int else b"\x88\x00")
        self.flush()
        self.transport.disconnect()

    def _detach(self) -> None:
        """Leave every channel so no more publications are queued for this connection.

        The session record is saved first, with the channels and positions it had, so a
        reconnect within ``session_ttl`` (to any node) can resume it."""
        if self.session and not self.final_saved and self.identity is not None:
            self.final_saved = True
            self.server.save_session_later(self.session, self.session_record())
        if self.subs:
            server = self.server
            for channel in self.subs:
                server.leave(channel, self)
            self.subs = {}
        self.recovering = None

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
                self.close(CloseCode.TOKEN_EXPIRED)

    def drain(self, reconnect_in_ms: int) -> None:
        if self.sm.state >= ConnState.CLOSING:
            return
        self.send({"type": "drain", "reconnect_in_ms": reconnect_in_ms})
        loop = asyncio.get_running_loop()
        loop.call_later(reconnect_in_ms / 1000, self.close, CloseCode.SERVICE_RESTART)

    # ------------------------------------------------------------------ requests

    def dispatch(self, request: Inbound) -> None:
        state = self.sm.state
        if state == ConnState.AUTHENTICATING:
            if self.worker is not None:  # credentials are being checked: keep the order
                self.submit(request)
            elif type(request) is Auth:
                self.auth_deadline = None
                self.submit(request)
            else:
                self.close(CloseCode.UNAUTHORIZED, "expected auth first")
            return
        if self.worker is not None:
            self.submit(request)
            return
        kind = type(request)
        if kind is Ping:
            self._pong(request)  # type: ignore[arg-type]
        elif kind is Pong:
            pass
        elif kind is Pub and self.server.publish_nowait is not None:
            self._pub_now(request)  # type: ignore[arg-type]
        elif kind is Unsub:
            self._unsub(request)  # type: ignore[arg-type]
        else:
            self.submit(request)

    def submit(self, request: Inbound | None) -> None:
        """Queue a request for the worker (``None``: welcome an anonymous connection)."""
        if self.queue is None:
            self.queue = deque()
        self.queue.append(request)  # type: ignore[arg-type]
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        queue = self.queue
        assert queue is not None
        try:
            while queue and self.sm.state <= ConnState.OPEN:
                await self._handle(queue.popleft())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request handling failed conn=%s", self.id)
            self.close(CloseCode.INTERNAL_ERROR)
        finally:
            self.worker = None
            self.queue = None

    async def _handle(self, request: Inbound | None) -> None:
        if request is None:
            await self._welcome(Identity(user="", channels=self.server.config.anonymous_channels))
            return
        kind = type(request)
        if kind is Auth:
            await self._auth(request)  # type: ignore[arg-type]
            return
        if self.sm.state != ConnState.OPEN:
            return
        if kind is Sub:
            await self._sub(request)  # type: ignore[arg-type]
        elif kind is Pub:
            await self._pub(request)  # type: ignore[arg-type]
        elif kind is Rpc:
            await self._rpc(request)  # type: ignore[arg-type]
        elif kind is Unsub:
            self._unsub(request)  # type: ignore[arg-type]
        elif kind is Ping:
            self._pong(request)  # type: ignore[arg-type]

    def _pong(self, request: Ping) -> None:
        self.send({"type": "pong", "t": request.t})

    async def _auth(self, request: Auth) -> None:
        first = self.sm.state == ConnState.AUTHENTICATING
        try:
            result = self.server.authenticator(request.token)
            identity: Identity = await result if inspect.isawaitable(result) else result
        except TokenExpired:
            if first:
                self.close(CloseCode.TOKEN_EXPIRED)
            else:
                self.send_error(ErrorCode.UNAUTHORIZED, "token expired")
            return
        except AuthError as exc:
            if first:
                self.close(CloseCode.UNAUTHORIZED, str(exc))
            else:
                self.send_error(ErrorCode.UNAUTHORIZED, str(exc))
            return
        if first:
            await self._welcome(identity)
            return
        current = self.identity
        if current is not None and not current.anonymous and current.user != identity.user:
            self.send_error(ErrorCode.FORBIDDEN, "a refreshed token must be for the same user")
            return
        self.identity = identity
        # Channels the new token no longer grants are left.
        for channel in [c for c in self.subs if not self.server.may_access(identity, c, "sub")]:
            self.subs.pop(channel, None)
            self.server.leave(channel, self)
        self._send_welcome()

    async def _welcome(self, identity: Identity) -> None:
        server = self.server
        self.identity = identity
        if not await server.run_connect_hook(self):
            self.close(CloseCode.FORBIDDEN)
            return
        record = None
        if self.requested_session:
            record = await server.load_session(self.requested_session)
        if record is not None and record.user == identity.user:
            self.session = self.requested_session  # type: ignore[assignment]
            self.resumed = True
            previous = record.subs
        else:
            self.session = secrets.token_hex(12)
            previous = {}
        if self.sm.state != ConnState.AUTHENTICATING:
            return  # closed while the session was loading
        self.sm.advance(ConnState.OPEN)
        self.auth_deadline = None
        self._send_welcome(previous)
        server.log_open(self)
        await server.save_session(self)

    def _send_welcome(self, previous: dict[str, tuple[str, int]] | None = None) -> None:
        cfg = self.server.config
        ident = self.identity
        assert ident is not None
        self.send({
            "type": "welcome",
            "client": self.id,
            "session": self.session,
            "ping_interval": cfg.ping_interval,
            "pong_timeout": cfg.pong_timeout,
            "expires_at": ident.expires_at,
            "resumed": self.resumed,
            "subs": [{"channel": c, "epoch": e, "offset": o}
                     for c, (e, o) in (previous or {}).items()],
        })

    async def _sub(self, req: Sub) -> None:
        channel = req.channel
        server = self.server
        if channel in self.subs:
            self.send_error(ErrorCode.ALREADY_SUBSCRIBED, "already subscribed", req.id)
            return
        if not server.may_access(self.identity, channel, "sub"):  # type: ignore[arg-type]
            self.send_error(ErrorCode.FORBIDDEN, "not allowed to subscribe to this channel", req.id)
            return
        if len(self.subs) >= server.config.max_subscriptions:
            self.send_error(ErrorCode.TOO_MANY_SUBSCRIPTIONS, "too many subscriptions", req.id)
            return
        since = StreamPosition(req.since.epoch, req.since.offset) if req.since else None
        # Join first, buffer live publications, then read history: nothing published in
        # between can fall through the crack, and the buffer is merged by offset.
        if self.recovering is None:
            self.recovering = {}
        self.recovering[channel] = []
        self.subs[channel] = _RECOVERING
        try:
            await server.join(channel, self)
            result = await server.broker.history(channel, since)
        except BrokerUnavailable:
            self._abort_sub(channel)
            self.send_error(ErrorCode.UNAVAILABLE, "broker unavailable; try again", req.id)
            return
        if self.recovering is None or channel not in self.recovering:
            return  # closed or unsubscribed meanwhile
        top = result.position
        replay = result.publications
        for pub in replay:
            self.enqueue(text_frame(_msg(pub)))
        recovered = is_recovered(since, top, replay)
        ack: dict[str, Any] = {"type": "ack", "id": req.id, "epoch": top.epoch,
                               "offset": top.offset, "recovered": recovered}
        self.send(ack)
        buffered = self.recovering.pop(channel)
        if not self.recovering:
            self.recovering = None
        for pub in merge_live(top.offset, top.epoch, buffered):
            self.enqueue(text_frame(_msg(pub)))
        self.subs[channel] = (top.epoch, top.offset)
        await server.save_session(self)

    def _abort_sub(self, channel: str) -> None:
        self.subs.pop(channel, None)
        if self.recovering is not None:
            self.recovering.pop(channel, None)
            if not self.recovering:
                self.recovering = None
        self.server.leave(channel, self)

    def _unsub(self, req: Unsub) -> None:
        if req.channel not in self.subs:
            self.send_error(ErrorCode.NOT_SUBSCRIBED, "not subscribed", req.id)
            return
        self._abort_sub(req.channel)
        self.send({"type": "ack", "id": req.id})

    def _pub_check(self, req: Pub) -> bool:
        server = self.server
        if not server.may_access(self.identity, req.channel, "pub"):  # type: ignore[arg-type]
            self.send_error(ErrorCode.FORBIDDEN, "not allowed to publish to this channel", req.id)
            return False
        if len(req.data) > server.config.max_data_size:
            self.send_error(ErrorCode.BAD_REQUEST, "data over max_data_size", req.id)
            return False
        return True

    def _pub_now(self, req: Pub) -> None:
        if not self._pub_check(req):
            return
        publish = self.server.publish_nowait
        assert publish is not None
        result = publish(req.channel, bytes(req.data), req.key)
        if not result.duplicate:
            self.server.stats.publications += 1
        self._pub_ack(req.id, result.epoch, result.offset, result.duplicate)

    async def _pub(self, req: Pub) -> None:
        if not self._pub_check(req):
            return
        try:
            result = await self.server.publish_raw(req.channel, bytes(req.data), key=req.key)
        except BrokerUnavailable as exc:
            log.warning("publish refused conn=%s channel=%s: %s", self.id, req.channel, exc)
            self.send_error(ErrorCode.UNAVAILABLE, "broker unavailable; nothing was published",
                            req.id)
            return
        self._pub_ack(req.id, result.epoch, result.offset, result.duplicate)

    def _pub_ack(self, rid: int, epoch: str, offset: int, duplicate: bool) -> None:
        if duplicate:
            self.send({"type": "ack", "id": rid, "epoch": epoch, "offset": offset,
                       "duplicate": True})
        else:
            self.enqueue(text_frame(b'{"type":"ack","id":%d,"epoch":"%s","offset":%d}'
                                    % (rid, epoch.encode(), offset)))

    async def _rpc(self, req: Rpc) -> None:
        outcome = await self.server.call_rpc(self, req.method, bytes(req.data))
        if isinstance(outcome, tuple):
            code, reason = outcome
            if code is ErrorCode.INVALID_PARAMS or code is ErrorCode.UNKNOWN_METHOD:
                now = time.monotonic()
                try:
                    self.guard.invalid(now)  # type: ignore[union-attr]
                except CloseConnection as exc:
                    self.close(exc.code, exc.reason)
                    return
            self.send_error(code, reason, req.id)
            return
        self.enqueue(text_frame(b'{"type":"result","id":%d,"data":%s}' % (req.id, outcome)))

    def session_record(self) -> bytes:
        subs = {c: v for c, v in self.subs.items() if v is not _RECOVERING}
        user = self.identity.user if self.identity is not None else ""
        return msgspec.json.encode(_SessionRecord(user=user, subs=subs))


def _msg(pub: Publication) -> bytes:
    from staywire.protocol.envelope import msg_envelope

    return msg_envelope(pub.channel, pub.epoch, pub.offset, pub.data)


def decode_session(raw: bytes) -> _SessionRecord | None:
    try:
        return _session_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
