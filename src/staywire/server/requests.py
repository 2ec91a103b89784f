"""What each request does: auth and welcome, sub (with recovery), unsub; pub and rpc
are in ``publishing.py``.

``RequestHandlers`` is one object per node, shared by its connections: a connection
hands it each request with itself (``dispatch(conn, request)``), so the handlers hold
the node's services and the connection holds only its own state.

There is no task per connection. Requests that can be answered at once are
answered in the frame callback, and a publish on a broker with a queued path
(Redis) is handed to it there and answered from its callback; the others (auth,
sub, rpc, and anything on a broker that must be awaited) go to a short-lived worker
task that drains the connection's request queue in order and then ends. So an idle connection owns
no task, and a connection's requests are handled in the order they were sent
(a client's publishes keep their order).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import secrets
import time
from collections import deque
from typing import Any, Protocol

import msgspec

from staywire.brokers.base import Broker
from staywire.protocol.stream import Position, Publication
from staywire.config import Config
from staywire.exceptions import AuthError, BrokerUnavailable, ProxyUnavailable, TokenExpired
from staywire.protocol.codes import CloseCode, ErrorCode
from staywire.protocol.envelope import (
    Auth, Ping, Pong, PresenceQuery, PresenceStatsQuery, Pub, Rpc, Sub, Unsub, encode,
)
from staywire.protocol.binary import BytesPub, BytesRpc
from staywire.protocol.inbound import InboundGuard, Request
from staywire.protocol.recovery import is_recovered
from staywire.protocol.state import ConnectionStateMachine, ConnState
from staywire.proxy.backend import Backend
from staywire.proxy.schema import Disconnect
from staywire.server.access import AccessRules
from staywire.server.auth import Authenticator, Identity, proxy_identity
from staywire.server.background import Background
from staywire.server.hooks import Hooks
from staywire.server.membership import Membership
from staywire.server.presence import MAX_INFO, Presence
from staywire.server.publisher import Publisher
from staywire.server.publishing import PublishRequests
from staywire.server.rpc import RpcRegistry
from staywire.server.server_subs import (
    RECOVERING,
    Joined,
    ServerSubs,
    carry_over,
    msg_frame,
    positions,
    with_api_subs,
)
from staywire.server.sessions import Sessions, encode_session
from staywire.server.tracker import ConnectionTable
from staywire.server.transport import text_frame

__all__ = ["Conn", "RequestHandlers", "session_record"]

log = logging.getLogger("staywire.server")


# At most this many consecutive publishes of one connection handled as one run.
_PUB_RUN = 64
_PUBS = (Pub, BytesPub)  # a text and a binary pub take the same path
# Read on every request: an enum member read off its class costs about 120 ns more than
# a module global (CPython 3.11).
_AUTHENTICATING = ConnState.AUTHENTICATING


class Conn(Protocol):
    """What the handlers use of a connection: its state, and its output."""

    id: str
    ip: str
    session: str
    requested_session: str | None
    identity: Identity | None
    sm: ConnectionStateMachine
    guard: InboundGuard | None
    subs: dict[str, Any]
    recovering: dict[str, list[Publication]] | None
    allowance: int
    queue: deque[Request | None] | None
    worker: asyncio.Task[None] | None
    auth_deadline: float | None
    resumed: bool
    final_saved: bool
    user_data: dict[str, Any]
    headers: dict[str, str] | None
    presence_info: bytes | None
    binary: bool  # protocol v2: publications reach it as binary frames
    out: list[bytes]
    out_size: int
    opened_at: float
    close_code: int | None
    close_reason: str

    def send(self, obj: dict[str, Any]) -> None: ...
    def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None,
                   channel: str | None = None) -> None: ...
    def enqueue(self, frame: bytes) -> None: ...
    def close(self, code: CloseCode | int, reason: str | None = None) -> None: ...
    def flush(self) -> None: ...
    def slow_consumer(self) -> None: ...


class RequestHandlers:
    __slots__ = ("config", "rate_limit", "authenticator", "access", "membership", "broker",
                 "sessions", "rpc", "hooks", "publisher", "table", "publishing", "backend",
                 "background", "keep_headers", "server_subs", "presence")

    def __init__(self, config: Config, *, rate_limit: dict[str, float],
                 authenticator: Authenticator, access: AccessRules, membership: Membership,
                 broker: Broker, sessions: Sessions, rpc: RpcRegistry, hooks: Hooks,
                 publisher: Publisher, table: ConnectionTable[Any],
                 presence: Presence, backend: Backend | None = None,
                 background: Background | None = None) -> None:
        self.config = config
        self.rate_limit = rate_limit  # announced in every welcome
        self.authenticator = authenticator
        self.access = access
        self.membership = membership
        self.broker = broker  # history reads
        self.sessions = sessions
        self.rpc = rpc
        self.hooks = hooks
        self.publisher = publisher
        self.table = table
        self.publishing = PublishRequests(config, access, publisher, rpc)
        self.backend = backend  # connect and refresh proxies (sub/pub: access, rpc: rpc)
        self.background = background
        # The forwarded headers outlive the connect only when a later event sends them.
        self.keep_headers = bool(config.refresh_proxy_url or config.subscribe_proxy_url
                                 or config.publish_proxy_url or config.rpc_proxy_url)
        self.presence = presence
        self.server_subs = ServerSubs(config, membership, broker, presence)

    # ------------------------------------------------------------------ ordering

    def dispatch(self, conn: Conn, request: Request) -> None:
        if conn.sm.state == _AUTHENTICATING:
            kind = type(request)
            # Heartbeats work before auth: only auth_timeout (4508) ends a connection that
            # never authenticates, not the answer to the server's own ping.
            if kind is Pong:
                return
            if kind is Ping:
                _pong(conn, request)  # type: ignore[arg-type]
                return
            if conn.worker is not None:  # credentials are being checked: keep the order
                self.submit(conn, request)
            elif kind is Auth:
                conn.auth_deadline = None
                self.submit(conn, request)
            else:
                conn.close(CloseCode.UNAUTHORIZED, "expected auth first")
            return
        if conn.worker is not None:
            self.submit(conn, request)
            return
        kind = type(request)
        if kind is Ping:
            _pong(conn, request)  # type: ignore[arg-type]
        elif kind is Pong:
            pass
        elif (kind is Pub or kind is BytesPub) and self.publishing.publish_now:
            self.publishing.pub_now(conn, request)  # type: ignore[arg-type]
        elif (kind is Pub or kind is BytesPub) and self.publishing.publish_later:
            self.publishing.pub_later(conn, request)  # type: ignore[arg-type]
        elif kind is Unsub:
            self._unsub(conn, request)  # type: ignore[arg-type]
        else:
            self.submit(conn, request)

    def submit(self, conn: Conn, request: Request | None) -> None:
        """Queue a request for the worker (``None``: welcome an anonymous connection)."""
        if conn.queue is None:
            conn.queue = deque()
        conn.queue.append(request)
        if conn.worker is None:
            conn.worker = asyncio.get_running_loop().create_task(self._work(conn))

    async def _work(self, conn: Conn) -> None:
        queue = conn.queue
        assert queue is not None
        try:
            while queue and conn.sm.state <= ConnState.OPEN:
                request = queue.popleft()
                if (queue and type(request) in _PUBS and type(queue[0]) in _PUBS
                        and self.publishing.pub_runs):
                    await self._pub_run(conn, request, queue)  # type: ignore[arg-type]
                else:
                    await self._handle(conn, request)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request handling failed conn=%s", conn.id)
            conn.close(CloseCode.INTERNAL_ERROR)
        finally:
            conn.worker = None
            conn.queue = None

    async def _pub_run(self, conn: Conn, first: Pub | BytesPub,
                       queue: deque[Request | None]) -> None:
        """Consecutive publishes of a connection handled together, so that the broker
        sends them in one round trip (RedisBroker pipelines the publishes of a tick).

        Each task reaches ``broker.publish`` before its first await, in the order the
        tasks were created, which is the order the client sent them: the broker keeps
        that order, and the acks follow it."""
        run: list[Request | None] = [first]
        while queue and type(queue[0]) in _PUBS and len(run) < _PUB_RUN:
            run.append(queue.popleft())
        await asyncio.gather(*(self._handle(conn, req) for req in run))

    async def _handle(self, conn: Conn, request: Request | None) -> None:
        if request is None:
            if self.backend is not None and self.backend.connect_url is not None:
                await self._proxy_connect(conn, self.backend)
                return
            await self._welcome(conn, Identity(user="",
                                               channels=self.config.anonymous_channels))
            return
        kind = type(request)
        if kind is Auth:
            await self._auth(conn, request)  # type: ignore[arg-type]
            return
        if conn.sm.state != ConnState.OPEN:
            return
        if kind is Sub:
            await self._sub(conn, request)  # type: ignore[arg-type]
        elif kind is Pub or kind is BytesPub:
            await self.publishing.pub(conn, request)  # type: ignore[arg-type]
        elif kind is Rpc or kind is BytesRpc:
            await self.publishing.rpc(conn, request)  # type: ignore[arg-type]
        elif kind is PresenceQuery or kind is PresenceStatsQuery:
            await self.presence.answer(conn, request)  # type: ignore[arg-type]
        elif kind is Unsub:
            self._unsub(conn, request)  # type: ignore[arg-type]
        elif kind is Ping:
            _pong(conn, request)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ auth and welcome

    async def _auth(self, conn: Conn, request: Auth) -> None:
        first = conn.sm.state == ConnState.AUTHENTICATING
        try:
            result = self.authenticator(request.token)
            identity: Identity = await result if inspect.isawaitable(result) else result
        except TokenExpired:
            if first:
                conn.close(CloseCode.TOKEN_EXPIRED)
            else:
                conn.send_error(ErrorCode.UNAUTHORIZED, "token expired")
            return
        except AuthError as exc:
            if first:
                conn.close(CloseCode.UNAUTHORIZED, str(exc))
            else:
                conn.send_error(ErrorCode.UNAUTHORIZED, str(exc))
            return
        if first:
            await self._welcome(conn, identity)
            return
        current = conn.identity
        if current is not None and not current.anonymous and current.user != identity.user:
            conn.send_error(ErrorCode.FORBIDDEN, "a refreshed token must be for the same user")
            return
        identity = carry_over(current, identity)  # the server-made subscriptions stay
        conn.identity = identity
        # Channels the new token no longer grants are left, and the client is told which:
        # a subscription must never end in silence.
        access = self.access
        for channel in [c for c in conn.subs if access.asks(c, "sub") is None
                        and c not in identity.server_subs
                        and not access.allows(identity, c, "sub")]:
            conn.subs.pop(channel, None)
            self.membership.leave(channel, conn)
            self.presence.left(channel, conn, gone=False)
            conn.send_error(ErrorCode.FORBIDDEN, "the refreshed token does not grant this channel",
                            channel=channel)
        self._send_welcome(conn)

    async def _proxy_connect(self, conn: Conn, backend: Backend) -> None:
        """No token in the handshake: the application's backend says who this is."""
        try:
            answer = await backend.connect((conn.id, conn.ip, conn.headers))
        except ProxyUnavailable:
            # 1013: "try again later", which every client reconnects after with backoff.
            conn.close(CloseCode.TRY_AGAIN_LATER, "the application's backend is unavailable")
            return
        finally:
            if not self.keep_headers:
                conn.headers = None
        if conn.sm.state != ConnState.AUTHENTICATING:
            return  # closed while the backend was asked
        if isinstance(answer, Disconnect):
            conn.close(answer.code, answer.reason or None)
            return
        identity = proxy_identity(answer.user, answer.channels, answer.expire_at,
                                  answer.subscriptions)
        await self._welcome(conn, identity,
                            bytes(answer.data) if isinstance(answer.data, msgspec.Raw) else None)

    def expired(self, conn: Conn, wall: float) -> None:
        """The identity's expiry has come (the sweeper): refresh it at the backend, or close.

        Only an identity the connect proxy granted is refreshed there; a JWT's expiry
        closes 4401 as without proxies."""
        ident = conn.identity
        backend = self.backend
        if (ident is None or not ident.via_proxy or backend is None
                or backend.refresh_url is None or self.background is None):
            conn.close(CloseCode.TOKEN_EXPIRED)
            return
        # Pushed forward first: the sweeper must not ask again while this call is out. If
        # the call fails, that is when it is asked again (the connection stays open: an
        # outage never drops one): once the circuit lets a probe through, not before,
        # when every call would fail at once without reaching the backend.
        retry = max(self.config.proxy_breaker_reset, self.config.proxy_timeout)
        conn.identity = dataclasses.replace(ident, expires_at=wall + retry)
        self.background.spawn(self._refresh(conn, backend))

    async def _refresh(self, conn: Conn, backend: Backend) -> None:
        ident = conn.identity
        assert ident is not None
        try:
            answer = await backend.refresh((conn.id, conn.ip, conn.headers), ident.user)
        except ProxyUnavailable:
            log.info("refresh not answered conn=%s: asked again in %.1fs", conn.id,
                     max(self.config.proxy_breaker_reset, self.config.proxy_timeout))
            return
        if conn.sm.state != ConnState.OPEN:
            return
        if isinstance(answer, Disconnect):
            conn.close(answer.code, answer.reason or None)
            return
        if answer.expired or answer.expire_at is None or answer.expire_at <= time.time():
            conn.close(CloseCode.TOKEN_EXPIRED, "session ended by the application")
            return
        current = conn.identity
        if current is not None and current.via_proxy:
            conn.identity = dataclasses.replace(current, expires_at=answer.expire_at)

    async def _welcome(self, conn: Conn, identity: Identity, data: bytes | None = None
                       ) -> None:
        conn.identity = identity
        if data is not None and len(data) <= MAX_INFO:
            conn.presence_info = data  # shown as the member's info on presence channels
        if not await self.hooks.allow(conn):
            conn.close(CloseCode.FORBIDDEN)
            return
        record = failed = None
        if conn.requested_session:
            record, failed = await self.sessions.load(conn.requested_session, identity.user)
        if record is not None:
            conn.session = conn.requested_session  # type: ignore[assignment]
            conn.resumed = True
            previous = record.subs
            # The server API's subscriptions of the session: joined again below.
            identity = conn.identity = with_api_subs(identity, record.api_subs)
        else:
            conn.session = secrets.token_hex(12)
            previous = {}
        if conn.sm.state != ConnState.AUTHENTICATING:
            return  # closed while the session was loading
        joined: Joined | None = None
        if identity.server_subs:
            joined, refused = await self.server_subs.join(conn, identity.server_subs)
            if conn.sm.state != ConnState.AUTHENTICATING:
                return  # closed while joining: detach() left what was joined
        conn.sm.advance(ConnState.OPEN)
        conn.auth_deadline = None
        self._send_welcome(conn, previous, failed, data, joined)
        self.table.welcomed(conn)
        if joined is not None:
            self.server_subs.settle(conn, joined, refused)
            if joined and conn.session:
                await self.sessions.save(conn.session, session_record(conn))
        # No record yet: a session is worth keeping once it has subscriptions (saved at
        # each sub and when the connection ends). Idle connections cost the broker nothing.

    def _send_welcome(self, conn: Conn,
                      previous: dict[str, Position] | None = None,
                      resume_failed: str | None = None, data: bytes | None = None,
                      joined: Joined | None = None) -> None:
        cfg = self.config
        ident = conn.identity
        assert ident is not None
        expires_at = ident.expires_at
        if ident.via_proxy and cfg.refresh_proxy_url:
            expires_at = None  # the server renews it at the backend: the client has nothing to do
        welcome: dict[str, Any] = {
            "type": "welcome",
            "client": conn.id,
            "session": conn.session,
            "ping_interval": cfg.ping_interval,
            "pong_timeout": cfg.pong_timeout,
            "expires_at": expires_at,
            "resumed": conn.resumed,
            "subs": [{"channel": c, "epoch": p.epoch, "offset": p.offset}
                     for c, p in (previous or {}).items()],
            "rate_limit": self.rate_limit,
        }
        if conn.binary:  # protocol v2: what binary data may be (docs/protocol.md)
            welcome["binary"] = {"max_data_size": cfg.max_data_size,
                                 "max_transfer_size": cfg.max_transfer_size,
                                 "transfer_timeout": cfg.transfer_timeout,
                                 # at most half the message burst: a window resent after a
                                 # reconnect still fits the server's bucket
                                 "transfer_window": max(1, min(cfg.transfer_window,
                                                               int(cfg.rate_burst // 2)))}
        if resume_failed is not None:
            welcome["resume_failed"] = resume_failed  # a new session, and why
        if data is not None:
            welcome["data"] = msgspec.Raw(data)  # the connect proxy's custom data
        if joined is not None:
            welcome["server_subs"] = positions(joined)  # subscribed by the connect proxy
        conn.send(welcome)

    # ------------------------------------------------------------------ channels

    async def _sub(self, conn: Conn, req: Sub) -> None:
        channel = req.channel
        if channel in conn.subs:
            conn.send_error(ErrorCode.ALREADY_SUBSCRIBED, "already subscribed", req.id)
            return
        access = self.access
        ident = conn.identity
        url = access.asks(channel, "sub") if access.proxied_sub else None
        if ident is not None and channel in ident.server_subs:
            pass  # the connect answer subscribed it: granted (a client resubscribes to recover)
        elif url is not None:
            try:
                verdict = await access.ask(url, conn, channel, "sub")
            except ProxyUnavailable:
                conn.send_error(ErrorCode.UNAVAILABLE,
                                "the application's backend is unavailable; try again", req.id)
                return
            if isinstance(verdict, tuple):
                conn.send_error(verdict[0], verdict[1], req.id)
                return
            if conn.sm.state != ConnState.OPEN or channel in conn.subs:
                return  # closed meanwhile
        elif not access.allows(ident, channel, "sub"):  # type: ignore[arg-type]
            conn.send_error(ErrorCode.FORBIDDEN, "not allowed to subscribe to this channel", req.id)
            return
        joining = self.server_subs
        opts = self.config.channel(channel)
        refusal = joining.refusal(conn, channel, opts)
        if refusal is not None:
            conn.send_error(*refusal, req.id)
            return
        # recovery = false: the position is acked, nothing is replayed.
        since = req.since if opts.recovery else None
        try:
            result = await joining.hold(conn, channel, since)
        except BrokerUnavailable:
            conn.send_error(ErrorCode.UNAVAILABLE, "broker unavailable; try again", req.id)
            return
        if conn.recovering is None or channel not in conn.recovering:
            return  # closed or unsubscribed meanwhile
        top = result.position
        binary = conn.binary
        replay = [msg_frame(pub, binary) for pub in result.publications]
        conn.allowance += sum(len(frame) for frame in replay)
        for frame in replay:
            conn.enqueue(frame)
        if conn.recovering is None or channel not in conn.recovering:
            return  # closed while replaying
        recovered = is_recovered(since, top, result.publications)
        conn.send({"type": "ack", "id": req.id, "epoch": top.epoch, "offset": top.offset,
                   "recovered": recovered})
        joining.go_live(conn, channel, top)
        if conn.session:
            await self.sessions.save(conn.session, session_record(conn))

    def _abort_sub(self, conn: Conn, channel: str) -> None:
        self.server_subs.abort(conn, channel)

    def _unsub(self, conn: Conn, req: Unsub) -> None:
        if req.channel not in conn.subs:
            conn.send_error(ErrorCode.NOT_SUBSCRIBED, "not subscribed", req.id)
            return
        self._abort_sub(conn, req.channel)
        conn.send({"type": "ack", "id": req.id})

    def detach(self, conn: Conn) -> None:
        """Leave every channel so no more publications are queued for ``conn`` (closing).

        The session record is saved first, with the channels and positions it had, so a
        reconnect within ``session_ttl`` (to any node) can resume it."""
        if (conn.session and not conn.final_saved and conn.identity is not None
                and (conn.subs or conn.resumed)):
            conn.final_saved = True
            self.sessions.save_later(conn.session, session_record(conn))
        if conn.subs:
            leave = self.membership.leave
            presence_left = self.presence.left
            for channel in conn.subs:
                leave(channel, conn)
                presence_left(channel, conn, gone=True)
            conn.subs = {}
        conn.recovering = None

def _pong(conn: Conn, request: Ping) -> None:
    # Spliced, not a dict encoded: every client heartbeat (and the echo bench) takes this
    # path. ``t`` is a number or null, encoded by msgspec on its own.
    conn.enqueue(text_frame(b'{"type":"pong","t":%s}' % encode(request.t)))


def session_record(conn: Conn) -> bytes:
    """The session as a reconnect would resume it: the user and the settled positions."""
    subs = {c: v for c, v in conn.subs.items() if v is not RECOVERING}
    ident = conn.identity
    if ident is None:
        return encode_session("", subs)
    return encode_session(ident.user, subs, ident.api_subs)
