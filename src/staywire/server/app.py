"""The application API: ``Server(config)``, RPC methods, hooks, publishing, running, draining."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import signal
import ssl
import time
import typing
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from staywire.brokers import create_broker
from staywire.brokers.base import Broker, PublishResult
from staywire.config import Config
from staywire.exceptions import AuthError, BrokerUnavailable, ConfigError
from staywire.protocol.codes import CloseCode, ErrorCode
from staywire.protocol.envelope import CHANNEL_PATTERN
from staywire.protocol.inbound import Limits
from staywire.protocol.ratelimit import KeyedBuckets
from staywire.protocol.state import ConnState
from staywire.server import routes
from staywire.server.auth import Authenticator, Identity, JWTAuthenticator, can_access
from staywire.server.connection import Connection
from staywire.server.hub import Hub
from staywire.server.metrics import Stats, StatsCollector
from staywire.server.origin import OriginPolicy
from staywire.server.requests import decode_session
from staywire.server.transport import listen

__all__ = ["RpcContext", "Server"]

log = logging.getLogger("staywire.server")
_CHANNEL_RE = re.compile(CHANNEL_PATTERN)

Authorizer = Callable[[Identity, str, str], bool]
ConnectHook = Callable[["RpcContext"], Any]


class RpcContext:
    """What an RPC handler or hook learns about the calling connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def client(self) -> str:
        return self._conn.id

    @property
    def user(self) -> str:
        ident = self._conn.identity
        return ident.user if ident is not None else ""

    @property
    def identity(self) -> Identity | None:
        return self._conn.identity

    @property
    def ip(self) -> str:
        return self._conn.ip

    @property
    def data(self) -> dict[str, Any]:
        """Per-connection storage for the application."""
        return self._conn.user_data


class _RpcMethod:
    __slots__ = ("handler", "param_type")

    def __init__(self, handler: Callable[..., Any], param_type: Any) -> None:
        self.handler = handler
        self.param_type = param_type


class Server:
    """A Staywire server. ``await server.serve()`` runs it until ``stop()`` or a signal."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        broker: Broker | None = None,
        authenticator: Authenticator | None = None,
        authorize: Authorizer | None = None,
    ) -> None:
        self.config = config or Config()
        cfg = self.config
        try:
            self.origins = OriginPolicy(cfg.allowed_origins)
        except ValueError as exc:
            raise ConfigError(f"allowed_origins: {exc}") from None
        self.broker = broker if broker is not None else create_broker(cfg)
        if authenticator is None and (cfg.jwt_secret or cfg.jwt_public_key):
            authenticator = JWTAuthenticator(secret=cfg.jwt_secret, public_key=cfg.jwt_public_key,
                                             audience=cfg.jwt_audience, issuer=cfg.jwt_issuer)
        self.authenticator: Authenticator = authenticator or _refuse_tokens
        self._authorize = authorize
        self.limits = Limits.from_config(cfg)
        self.rate_limit = self.limits.announced()  # in every welcome
        self.stats = Stats()
        self.registry = CollectorRegistry()
        self.registry.register(StatsCollector(self.stats, self._gauges))
        self.connections: set[Connection] = set()
        self.per_ip: Counter[str] = Counter()
        self.handshakes = KeyedBuckets(cfg.handshake_rate, cfg.handshake_burst)
        self.hub: Hub = None  # type: ignore[assignment]  # made in start(): needs the loop
        self.draining = False
        self.publish_nowait: Callable[[str, bytes, str | None], PublishResult] | None = getattr(
            self.broker, "publish_nowait", None)
        self._rpc: dict[str, _RpcMethod] = {}
        self._on_connect: list[ConnectHook] = []
        self._on_disconnect: list[ConnectHook] = []
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._joining: dict[str, asyncio.Future[None]] = {}
        self.port: int | None = None
        self.api_port: int | None = None

    # ------------------------------------------------------------------ application API

    def rpc(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register an RPC method: ``async def handler(ctx: RpcContext, params: T) -> R``.

        ``params`` is decoded into ``T`` (any msgspec-supported type: a Struct, a
        dataclass, a TypedDict, ``int``...); data that does not fit gets an
        ``invalid_params`` error reply. The return value is encoded to JSON."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            hints = typing.get_type_hints(handler)
            params = list(inspect.signature(handler).parameters)
            param_type = hints.get(params[1], Any) if len(params) > 1 else None
            self._rpc[name] = _RpcMethod(handler, param_type)
            return handler

        return register

    def on_connect(self, hook: ConnectHook) -> ConnectHook:
        """Run after authentication, before ``welcome``; returning False refuses (4503)."""
        self._on_connect.append(hook)
        return hook

    def on_disconnect(self, hook: ConnectHook) -> ConnectHook:
        self._on_disconnect.append(hook)
        return hook

    async def publish(self, channel: str, data: Any, *, key: str | None = None) -> PublishResult:
        """Publish any JSON-encodable value to a channel from application code."""
        return await self.publish_raw(channel, msgspec.json.encode(data), key=key)

    async def publish_raw(self, channel: str, data: bytes, *, key: str | None = None
                          ) -> PublishResult:
        if not _CHANNEL_RE.match(channel):
            raise ValueError(f"invalid channel name {channel[:64]!r}")
        result = await self.broker.publish(channel, data, key=key)
        if not result.duplicate:
            self.stats.publications += 1
        return result

    # ------------------------------------------------------------------ used by connections

    def may_access(self, identity: Identity, channel: str, action: str) -> bool:
        if self._authorize is not None:
            return bool(self._authorize(identity, channel, action))
        return can_access(identity, channel)

    async def join(self, channel: str, conn: Connection) -> None:
        """Add a local subscriber; the first one subscribes this node at the broker.

        Every subscriber that joins while that is in flight waits for it: it must not read
        history before the node receives the channel's live publications (or it could miss
        some), and if the broker subscription fails, it fails for all of them."""
        if self.hub.add(channel, conn):
            pending: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._joining[channel] = pending
            try:
                await self.broker.subscribe(channel)
            except BrokerUnavailable as exc:
                for other in list(self.hub.channels.get(channel, ())):
                    self.hub.remove(channel, other)
                pending.set_exception(exc)
                raise
            finally:
                del self._joining[channel]
                if not pending.done():
                    pending.set_result(None)
            return
        joining = self._joining.get(channel)
        if joining is not None:
            await asyncio.shield(joining)

    def leave(self, channel: str, conn: Connection) -> None:
        if self.hub.remove(channel, conn):
            self._spawn(self._broker_unsubscribe(channel))

    async def _broker_unsubscribe(self, channel: str) -> None:
        if self.hub.subscribers(channel):
            return  # someone joined again meanwhile
        try:
            await self.broker.unsubscribe(channel)
        except BrokerUnavailable:
            pass  # the broker re-subscribes only channels with listeners after it recovers

    async def run_connect_hook(self, conn: Connection) -> bool:
        ctx = RpcContext(conn)
        for hook in self._on_connect:
            try:
                result = hook(ctx)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.exception("on_connect hook failed conn=%s", conn.id)
                return False
            if result is False:
                return False
        return True

    async def load_session(self, session_id: str) -> Any:
        try:
            raw = await self.broker.load_session(session_id)
        except BrokerUnavailable:
            return None
        return decode_session(raw) if raw is not None else None

    async def save_session(self, conn: Connection) -> None:
        if conn.session:
            await self._save_record(conn.session, conn.session_record())

    def save_session_later(self, session: str, record: bytes) -> None:
        self._spawn(self._save_record(session, record))

    async def _save_record(self, session: str, record: bytes) -> None:
        try:
            await self.broker.save_session(session, record, self.config.session_ttl)
        except BrokerUnavailable:
            pass  # a session is a convenience: the client holds its own positions

    async def call_rpc(self, conn: Connection, method: str, data: bytes
                       ) -> bytes | tuple[ErrorCode, str]:
        entry = self._rpc.get(method)
        if entry is None:
            return ErrorCode.UNKNOWN_METHOD, f"unknown method {method!r}"
        args: list[Any] = [RpcContext(conn)]
        if entry.param_type is not None:
            try:
                args.append(msgspec.json.decode(data, type=entry.param_type))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                return ErrorCode.INVALID_PARAMS, str(exc)
        try:
            result = entry.handler(*args)
            if inspect.isawaitable(result):
                result = await result
            return msgspec.json.encode(result)
        except Exception:
            log.exception("rpc %s failed conn=%s", method, conn.id)
            return ErrorCode.INTERNAL, "internal error"

    def connection_opened(self, conn: Connection) -> None:
        # Counted once the upgrade completed: a handshake that fails after routing never
        # reaches connection_closed, and would leak a count.
        self.per_ip[conn.ip] += 1
        self.connections.add(conn)
        self.stats.connections_opened += 1

    def log_open(self, conn: Connection) -> None:
        ident = conn.identity
        log.info("open conn=%s ip=%s user=%s session=%s%s", conn.id, conn.ip,
                 (ident.user or "-") if ident else "-", conn.session,
                 " resumed" if conn.resumed else "")

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.per_ip[conn.ip] -= 1
        if self.per_ip[conn.ip] <= 0:
            del self.per_ip[conn.ip]
        code = conn.close_code if conn.close_code is not None else int(CloseCode.ABNORMAL)
        self.stats.closes[code] += 1
        log.info("close conn=%s ip=%s code=%d reason=%s duration=%.1fs", conn.id, conn.ip, code,
                 conn.close_reason or "-", time.monotonic() - conn.opened_at)
        if self._on_disconnect:
            ctx = RpcContext(conn)
            for hook in self._on_disconnect:
                try:
                    result = hook(ctx)
                    if inspect.isawaitable(result):
                        self._spawn(result)
                except Exception:
                    log.exception("on_disconnect hook failed conn=%s", conn.id)

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _gauges(self) -> dict[str, float]:
        return {
            "connections": len(self.connections),
            "channels": len(self.hub.channels) if self.hub is not None else 0,
            "draining": float(self.draining),
            "broker_available": float(self.broker.available),
        }

    @property
    def ready(self) -> bool:
        return not self.draining and self.broker.available

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect the broker and start listening; returns once the ports are bound."""
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.hub = Hub(loop, self.config.max_send_buffer)
        await self.broker.start(self.hub.on_publication)
        cfg = self.config
        ssl_ctx = None
        if cfg.tls_cert:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        router = routes.Router(self)
        ws = await listen(router, cfg.host, cfg.port, max_frame_size=cfg.max_message_size,
                          ssl_context=ssl_ctx)
        self._servers.append(ws)
        self.port = ws.sockets[0].getsockname()[1]
        api_port = cfg.effective_api_port
        if api_port is not None:
            if cfg.api_port is None and cfg.port == 0:
                api_port = 0
            api = await routes.start_api(self, cfg.api_host, api_port)
            self._servers.append(api)
            self.api_port = api.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._sweep())
        log.info("listening on %s://%s:%d%s (api %s)", "wss" if ssl_ctx else "ws", cfg.host,
                 self.port, cfg.ws_path,
                 f"http://{cfg.api_host}:{self.api_port}" if self.api_port else "off")

    async def _sweep(self) -> None:
        """One timer for every connection: heartbeats, auth and token deadlines."""
        cfg = self.config
        period = max(0.02, min(1.0, cfg.ping_interval / 4, cfg.pong_timeout / 4,
                               cfg.auth_timeout / 4, cfg.close_timeout / 2))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            wall = time.time()
            for conn in list(self.connections):
                try:
                    conn.tick(now, wall)
                except Exception:
                    log.exception("sweep failed conn=%s", conn.id)
            if len(self.handshakes) > 1024:
                self.handshakes.prune(now)

    async def drain(self) -> None:
        """Graceful shutdown: refuse new connections, spread the old ones' reconnects, close."""
        if self.draining:
            return
        self.draining = True
        cfg = self.config
        log.info("draining %d connections over %.1fs", len(self.connections), cfg.drain_window)
        for conn in list(self.connections):
            if conn.sm.state <= ConnState.OPEN:
                conn.drain(int(random.uniform(0, cfg.drain_window) * 1000))
        deadline = time.monotonic() + cfg.shutdown_timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.disconnect(graceful=False)

    async def stop(self) -> None:
        """Drain, then release the ports and the broker."""
        await self.drain()
        for srv in self._servers:
            srv.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.sleep(0)  # let the last disconnects schedule their session saves
        if self._background:  # final session saves: a resume after a restart needs them
            await asyncio.wait(list(self._background), timeout=2.0)
        for task in list(self._background):
            task.cancel()
        await self.broker.close()
        if self._stopped is not None:
            self._stopped.set()

    async def serve(self) -> None:
        """Start, then run until SIGTERM/SIGINT (graceful drain) or ``stop()``."""
        await self.start()
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        def on_signal(signame: str) -> None:
            if not stopping:
                log.info("received %s", signame)
                stopping.append(loop.create_task(self.stop()))

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, on_signal, sig.name)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not main thread
                pass
        assert self._stopped is not None
        await self._stopped.wait()
        await asyncio.sleep(0.05)  # let the last close frames leave


def _refuse_tokens(token: str) -> Identity:
    raise AuthError("no authenticator configured: set jwt_secret or jwt_public_key")

