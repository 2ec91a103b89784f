"""``Server``: the one public entry point. It builds the node's parts, wires them, and runs them.

The parts, each in its own module, and the way a request travels through them
(docs/architecture.md draws it):

    transport.py (picows) -> router.py -> connection.py -> requests.py
        -> access.py, membership.py + hub.py, sessions.py, rpc.py, hooks.py, publisher.py
        -> brokers/

A part sees the parts above it only through a small ``typing.Protocol`` declared
beside it, or an object handed to it here; nothing below imports this module.
``Server`` itself holds the application API (``rpc``, hooks, ``publish``) and the
lifecycle (start, the sweeper, drain, stop).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from staywire.brokers import create_broker, create_control, create_presence
from staywire.brokers.presence import PresenceStore
from staywire.brokers.base import Broker, PublishResult
from staywire.config import Config
from staywire.exceptions import AuthError, ConfigError
from staywire.protocol.inbound import Limits
from staywire.protocol.ratelimit import KeyedBuckets
from staywire.protocol.state import ConnState
from staywire.proxy.backend import Backend
from staywire.server.access import AccessRules, Authorizer
from staywire.server.api import start_api
from staywire.server.api_methods import ApiMethods
from staywire.server.auth import Authenticator, Identity, JWTAuthenticator
from staywire.server.background import Background
from staywire.server.connection import Connection, NodeContext
from staywire.server.control import NodeControl
from staywire.server.faults import FaultLog
from staywire.server.gcpolicy import GcCollector, apply_policy
from staywire.server.hooks import ConnectHook, Hooks
from staywire.server.hub import Hub
from staywire.server.membership import Membership
from staywire.server.metrics import Stats, StatsCollector
from staywire.server.origin import OriginPolicy
from staywire.server.presence import Presence
from staywire.server.publisher import Publisher
from staywire.server.requests import RequestHandlers
from staywire.server.router import Router
from staywire.server.rpc import RpcContext, RpcRegistry
from staywire.server.sessions import Sessions
from staywire.server.tracker import ConnectionTable
from staywire.server.transport import listen
from staywire.server.user_subs import UserSubs

__all__ = ["RpcContext", "Server"]

log = logging.getLogger("staywire.server")


class Server:
    """A Staywire server. ``await server.serve()`` runs it until ``stop()`` or a signal."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        broker: Broker | None = None,
        authenticator: Authenticator | None = None,
        authorize: Authorizer | None = None,
        presence: PresenceStore | None = None,
        listen_socket: socket.socket | None = None,
    ) -> None:
        """``listen_socket``: one bound and listening on the config's host and port
        already (``listen_socket.bind_early``, as ``staywire serve`` does), served
        instead of binding them again."""
        self.config = config or Config()
        self._listen_socket = listen_socket
        cfg = self.config
        try:
            self.origins = OriginPolicy(cfg.allowed_origins)
        except ValueError as exc:
            raise ConfigError(f"allowed_origins: {exc}") from None
        self.broker = broker if broker is not None else create_broker(cfg)
        # This node among the others (the server API's info, channels, disconnect...).
        self.node_id = secrets.token_hex(6)
        self.control = create_control(cfg)
        if authenticator is None and (cfg.jwt_secret or cfg.jwt_public_key):
            authenticator = JWTAuthenticator(secret=cfg.jwt_secret, public_key=cfg.jwt_public_key,
                                             audience=cfg.jwt_audience, issuer=cfg.jwt_issuer)
        self.authenticator: Authenticator = authenticator or _refuse_tokens
        # The application's backend (docs/proxy.md): None unless a proxy URL is set.
        self.backend = Backend.from_config(cfg)
        # The options' own lookup, not Config.channel around it: asked twice per publish.
        self.access = AccessRules(authorize, self.backend, cfg.channels.for_channel)
        self.limits = Limits.from_config(cfg)
        self.rate_limit = self.limits.announced()  # in every welcome
        self.stats = Stats()
        self.registry = CollectorRegistry()
        self.registry.register(StatsCollector(self.stats, self._gauges))
        self.registry.register(GcCollector())
        if self.backend is not None:
            from staywire.proxy.metrics import ProxyCollector  # the proxy client: only if used

            self.registry.register(ProxyCollector(self.backend.client))
        self.table: ConnectionTable[Connection] = ConnectionTable(self.stats)
        self.handshakes = KeyedBuckets(cfg.handshake_rate, cfg.handshake_burst)
        self.background = Background()
        self.rpc_methods = RpcRegistry(self.backend)
        self.hooks = Hooks(self.background)
        self.publisher = Publisher(self.broker, self.stats)
        self.faults = FaultLog(self.stats)
        self.sessions = Sessions(self.broker, cfg.session_ttl, self.background, self.faults)
        self.presence_store = presence if presence is not None else create_presence(
            cfg, self.broker)
        self.presence: Presence | None = None  # made in start(), with the hub
        self.hub: Hub = None  # type: ignore[assignment]  # made in start(): needs the loop
        self.node_control: NodeControl | None = None  # made in start(), with the hub
        self.api_methods = ApiMethods(publish=self.publish_raw, broker=self.broker,
                                      control=self.control, max_data_size=cfg.max_data_size,
                                      node_timeout=cfg.api_node_timeout,
                                      presence=self.presence_store,
                                      channel_options=cfg.channel)
        self.draining = False
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None
        self.port: int | None = None
        self.api_port: int | None = None

    # ------------------------------------------------------------------ application API

    def rpc(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register an RPC method: ``async def handler(ctx: RpcContext, params: T) -> R``.

        ``params`` is decoded into ``T`` (any msgspec-supported type: a Struct, a
        dataclass, a TypedDict, ``int``...); data that does not fit gets an
        ``invalid_params`` error reply. The return value is encoded to JSON."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.rpc_methods.register(name, handler)
            return handler

        return register

    def on_connect(self, hook: ConnectHook) -> ConnectHook:
        """Run after authentication, before ``welcome``; returning False refuses (4503)."""
        self.hooks.connect.append(hook)
        return hook

    def on_disconnect(self, hook: ConnectHook) -> ConnectHook:
        self.hooks.disconnect.append(hook)
        return hook

    async def publish(self, channel: str, data: Any, *, key: str | None = None) -> PublishResult:
        """Publish to a channel from application code: bytes (``bytes``, ``bytearray``,
        ``memoryview``) as binary data, delivered as they are; any other value as JSON."""
        if isinstance(data, bytes | bytearray | memoryview):
            return await self.publish_raw(channel, bytes(data), key=key, binary=True)
        return await self.publish_raw(channel, msgspec.json.encode(data), key=key)

    async def publish_raw(self, channel: str, data: bytes, *, key: str | None = None,
                          binary: bool = False) -> PublishResult:
        """``data``: encoded JSON, or with ``binary`` the bytes to deliver."""
        return await self.publisher.publish(channel, data, key, binary=binary)

    @property
    def connections(self) -> set[Connection]:
        return self.table.connections

    @property
    def ready(self) -> bool:
        # The application's backend is left out on purpose: the node itself is fine
        # during its outage, and a load balancer that pulled every node would turn a
        # backend outage into a total one (staywire_proxy_breaker_state shows it).
        return not self.draining and self.broker.available

    def _gauges(self) -> dict[str, float]:
        return {
            "connections": len(self.table),
            "channels": len(self.hub.channels) if self.hub is not None else 0,
            "draining": float(self.draining),
            "broker_available": float(self.broker.available),
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect the broker and start listening; returns once the ports are bound."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        self._stopped = asyncio.Event()
        self.hub = Hub(loop, cfg.max_send_buffer)
        await self.broker.start(self.hub.on_publication)
        self.presence = Presence(cfg, self.presence_store, self.hub.broadcast, self.faults)
        await self.presence.start()
        handlers = RequestHandlers(
            cfg, rate_limit=self.rate_limit, authenticator=self.authenticator,
            access=self.access, membership=Membership(self.hub, self.broker, self.background, self.faults),
            broker=self.broker, sessions=self.sessions, rpc=self.rpc_methods, hooks=self.hooks,
            publisher=self.publisher, table=self.table, presence=self.presence,
            backend=self.backend,
            background=self.background)
        self.node_control = NodeControl(self.node_id, connections=lambda: self.table.connections,
                                        hub=self.hub, stats=self.stats,
                                        subscriber=UserSubs(handlers.server_subs, self.sessions))
        self.node_control.start()
        await self.control.start(self.node_control)
        node = NodeContext(cfg, self.limits, self.stats, self.hub, handlers, self.table,
                           self.hooks)
        router = Router(node, origins=self.origins, handshakes=self.handshakes, table=self.table,
                        status=self)
        ssl_ctx = None
        if cfg.tls_cert:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        # Before the port opens (no client waits on its collection), once the node's
        # long-lived parts exist, which it freezes (gcpolicy.py).
        apply_policy(cfg.gc_policy)
        ws = await listen(router, cfg.host, cfg.port, max_frame_size=cfg.max_message_size,
                          ssl_context=ssl_ctx, sock=self._listen_socket)
        self._servers.append(ws)
        self.port = ws.sockets[0].getsockname()[1]
        api_port = cfg.effective_api_port
        if api_port is not None:
            if cfg.api_port is None and cfg.port == 0:
                api_port = 0
            api = await start_api(self, cfg.api_host, api_port)
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
            for conn in list(self.table.connections):
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
        connections = self.table.connections
        log.info("draining %d connections over %.1fs", len(connections), cfg.drain_window)
        for conn in list(connections):
            if conn.sm.state <= ConnState.OPEN:
                conn.drain(int(random.uniform(0, cfg.drain_window) * 1000))
        deadline = time.monotonic() + cfg.shutdown_timeout
        while connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(connections):
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
        await self.background.stop(timeout=2.0)  # final session saves: a resume needs them
        if self.presence is not None:
            await self.presence.close()
        await self.control.close()
        if self.node_control is not None:
            self.node_control.stop()
        await self.broker.close()
        if self.backend is not None:
            await self.backend.close()
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

