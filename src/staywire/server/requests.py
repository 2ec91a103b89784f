"""What each request does: auth and welcome, sub (with recovery), unsub, pub, rpc.

There is no task per connection. Requests that can be answered at once are
answered in the frame callback; the others (auth, sub, rpc, and anything on a
broker that must be awaited) go to a short-lived worker task that drains the
connection's request queue in order and then ends. So an idle connection owns
no task, and a connection's requests are handled in the order they were sent
(a client's publishes keep their order).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import msgspec

from staywire.brokers.base import Publication, StreamPosition
from staywire.exceptions import AuthError, BrokerUnavailable, TokenExpired
from staywire.protocol.codes import CloseCode, ErrorCode
from staywire.protocol.envelope import (
    Auth,
    Inbound,
    Ping,
    Pong,
    Pub,
    Rpc,
    Sub,
    Unsub,
    msg_envelope,
)
from staywire.protocol.inbound import CloseConnection
from staywire.protocol.recovery import is_recovered, merge_live
from staywire.protocol.state import ConnState
from staywire.server.auth import Identity
from staywire.server.transport import text_frame

if TYPE_CHECKING:
    from staywire.protocol.inbound import InboundGuard
    from staywire.server.connection import Connection
    from staywire.protocol.state import ConnectionStateMachine
    from staywire.server.app import Server

__all__ = ["RequestHandlers", "decode_session"]

log = logging.getLogger("staywire.server")

RECOVERING = object()  # a subscription's value while its recovery is in flight


class _SessionRecord(msgspec.Struct):
    user: str
    subs: dict[str, tuple[str, int]] = {}


_session_decoder = msgspec.json.Decoder(_SessionRecord)


class RequestHandlers:
    """The request half of ``Connection`` (a mixin: it uses the connection's state)."""

    if not TYPE_CHECKING:  # at run time: no __dict__ (Connection declares the slots)
        __slots__ = ()

    @property
    def _conn(self) -> Connection:
        return cast("Connection", self)

    if TYPE_CHECKING:  # what it uses of Connection, for the type checker
        server: Server
        id: str
        session: str
        requested_session: str | None
        identity: Identity | None
        sm: ConnectionStateMachine
        guard: InboundGuard | None
        subs: dict[str, Any]
        recovering: dict[str, list[Publication]] | None
        allowance: int
        queue: deque[Inbound] | None
        worker: asyncio.Task[None] | None
        auth_deadline: float | None
        resumed: bool

        def send(self, obj: dict[str, Any]) -> None: ...
        def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None,
                       channel: str | None = None) -> None: ...
        def enqueue(self, frame: bytes) -> None: ...
        def close(self, code: CloseCode | int, reason: str | None = None) -> None: ...

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
        # Channels the new token no longer grants are left, and the client is told which:
        # a subscription must never end in silence.
        for channel in [c for c in self.subs if not self.server.may_access(identity, c, "sub")]:
            self.subs.pop(channel, None)
            self.server.leave(channel, self._conn)
            self.send_error(ErrorCode.FORBIDDEN, "the refreshed token does not grant this channel",
                            channel=channel)
        self._send_welcome()

    async def _welcome(self, identity: Identity) -> None:
        server = self.server
        self.identity = identity
        if not await server.run_connect_hook(self._conn):
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
        server.log_open(self._conn)
        # No record yet: a session is worth keeping once it has subscriptions (saved at
        # each sub and when the connection ends). Idle connections cost the broker nothing.

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
            "rate_limit": self.server.rate_limit,
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
        self.subs[channel] = RECOVERING
        try:
            await server.join(channel, self._conn)
            result = await server.broker.history(channel, since)
        except BrokerUnavailable:
            self._abort_sub(channel)
            self.send_error(ErrorCode.UNAVAILABLE, "broker unavailable; try again", req.id)
            return
        if self.recovering is None or channel not in self.recovering:
            return  # closed or unsubscribed meanwhile
        top = result.position
        replay = [text_frame(_msg(pub)) for pub in result.publications]
        self.allowance += sum(len(frame) for frame in replay)
        for frame in replay:
            self.enqueue(frame)
        if self.recovering is None or channel not in self.recovering:
            return  # closed while replaying
        recovered = is_recovered(since, top, result.publications)
        ack: dict[str, Any] = {"type": "ack", "id": req.id, "epoch": top.epoch,
                               "offset": top.offset, "recovered": recovered}
        self.send(ack)
        buffered = self.recovering.pop(channel)
        if not self.recovering:
            self.recovering = None
        for pub in merge_live(top.offset, top.epoch, buffered):
            self.enqueue(text_frame(_msg(pub)))
        self.subs[channel] = (top.epoch, top.offset)
        await server.save_session(self._conn)

    def _abort_sub(self, channel: str) -> None:
        self.subs.pop(channel, None)
        if self.recovering is not None:
            self.recovering.pop(channel, None)
            if not self.recovering:
                self.recovering = None
        self.server.leave(channel, self._conn)

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
        outcome = await self.server.call_rpc(self._conn, req.method, bytes(req.data))
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
        subs = {c: v for c, v in self.subs.items() if v is not RECOVERING}
        user = self.identity.user if self.identity is not None else ""
        return msgspec.json.encode(_SessionRecord(user=user, subs=subs))


def _msg(pub: Publication) -> bytes:
    return msg_envelope(pub.channel, pub.epoch, pub.offset, pub.data)


def decode_session(raw: bytes) -> _SessionRecord | None:
    try:
        return _session_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
