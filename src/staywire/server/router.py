"""The public port's HTTP: what each request on the WebSocket port gets.

picows hands every request to ``Router``: the upgrade on ``ws_path`` (Origin,
capacity, subprotocol, credentials are checked here, before any application code
runs), and plain GETs for health checks and the browser client's static files.
The internal API port is ``api.py``.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import time
from importlib import resources
from typing import Any, Protocol

from staywire.protocol.envelope import SUBPROTOCOL, SUBPROTOCOL_V2
from staywire.protocol.ratelimit import KeyedBuckets
from staywire.server.auth import cookie_token, query_params, redact
from staywire.server.connection import Connection, NodeContext
from staywire.server.echo import EchoConnection
from staywire.server.origin import OriginPolicy
from staywire.server.tracker import ConnectionTable
from staywire.server.transport import Request, accept, reject, respond

__all__ = ["Readiness", "Router"]

log = logging.getLogger("staywire.server")

_STATIC_NAME = re.compile(
    r"^/([A-Za-z0-9_\-]+(?:\.d)?\.(?:js|mjs|css|html|ts|svg|png|ico))$")


class Readiness(Protocol):
    """The node's state as health checks and new handshakes see it."""

    @property
    def ready(self) -> bool: ...
    @property
    def draining(self) -> bool: ...


class Router:
    """picows' listener factory: decides what each HTTP request on the WebSocket port gets."""

    def __init__(self, node: NodeContext, *, origins: OriginPolicy, handshakes: KeyedBuckets,
                 table: ConnectionTable[Connection], status: Readiness) -> None:
        self.node = node
        self.config = node.config
        self.origins = origins
        self.handshakes = handshakes
        self.table = table
        self.status = status
        self._static: dict[str, tuple[bytes, str] | None] = {}
        # The headers the application's backend gets (an allow-list: never the query,
        # so never a query token); read only when some proxy is configured.
        cfg = self.config
        self.forward = cfg.proxy_forward_headers if (
            cfg.connect_proxy_url or cfg.subscribe_proxy_url or cfg.publish_proxy_url
            or cfg.rpc_proxy_url) else ()

    def __call__(self, request: Request, peer: str) -> object:
        target = request.path.decode("latin-1")
        path = target.split("?", 1)[0]
        cfg = self.config
        if path == cfg.ws_path:
            return self._upgrade(request, target, peer)
        if path == cfg.echo_path and path is not None:
            if not self.origins.allows(request.headers.get("Origin")):
                return self._refuse(403, "origin", peer, target)
            return accept(EchoConnection(self.node.limits), None)
        if request.method != b"GET":
            return respond(405, b"method not allowed\n", "text/plain", {"Allow": "GET"})
        if path == "/healthz":
            return respond(200, b"ok\n", "text/plain")
        if path == "/readyz":
            status = self.status
            if status.ready:
                return respond(200, b"ready\n", "text/plain")
            return respond(503, b"draining\n" if status.draining else b"broker unavailable\n",
                           "text/plain")
        if path == "/" and cfg.demo:
            path = "/index.html"
        static = self._file(path)
        if static is not None:
            body, ctype = static
            return respond(200, body, ctype)
        return respond(404, b"not found\n", "text/plain")

    def _refuse(self, status: int, reason: str, peer: str, target: str, detail: str = "") -> object:
        self.node.stats.rejections[reason] += 1
        log.warning("refused handshake ip=%s target=%s status=%d reason=%s%s", peer,
                    redact(target), status, reason, f" ({detail})" if detail else "")
        return reject(status, f"{reason}\n")

    def _upgrade(self, request: Request, target: str, peer: str) -> object:
        cfg = self.config
        headers = request.headers
        ip = peer
        if cfg.trusted_proxy_header:
            forwarded = headers.get(cfg.trusted_proxy_header)
            if forwarded:
                # The right-most entry was added by our own proxy; the others are the
                # client's word and could be forged.
                ip = forwarded.split(",")[-1].strip() or peer
        origin = headers.get("Origin")
        if not self.origins.allows(origin):
            return self._refuse(403, "origin", ip, target, f"origin {origin[:200]!r} not allowed"
                                if origin else "")
        if self.status.draining:
            return self._refuse(503, "draining", ip, target)
        if not self.handshakes.take(ip, time.monotonic()):
            return self._refuse(429, "handshake_rate", ip, target)
        table = self.table
        if len(table.connections) >= cfg.max_connections:
            return self._refuse(503, "capacity", ip, target)
        if table.per_ip[ip] >= cfg.max_connections_per_ip:
            return self._refuse(503, "per_ip_limit", ip, target)
        offered = headers.get("Sec-WebSocket-Protocol")
        subprotocol = None
        if offered is not None:
            names = [p.strip() for p in offered.split(",")]
            if SUBPROTOCOL_V2 in names and cfg.binary:
                subprotocol = SUBPROTOCOL_V2  # v1 plus binary frames (docs/protocol.md)
            elif SUBPROTOCOL in names:
                subprotocol = SUBPROTOCOL
            else:
                return self._refuse(400, "subprotocol", ip, target,
                                    f"offered {offered[:100]!r}, need {SUBPROTOCOL_V2} "
                                    f"or {SUBPROTOCOL}")
        params = query_params(target)
        token = params.get("token") or cookie_token(headers.get("Cookie"), cfg.cookie_name)
        session = params.get("session")
        if session is not None and not re.fullmatch(r"[0-9a-f]{1,64}", session):
            session = None
        passed = self._forwarded(headers) if self.forward else None
        conn = Connection(self.node, ip, token, session, passed,
                          auth_follows=token is None and params.get("auth") == "message",
                          binary=subprotocol == SUBPROTOCOL_V2)
        return accept(conn, subprotocol)

    def _forwarded(self, headers: Any) -> dict[str, str]:
        """The allow-listed headers of the upgrade, for the application's backend."""
        passed = {}
        for name in self.forward:
            value = headers.get(name)
            if value is not None:
                if not value.isascii():  # picows keeps raw bytes as surrogates; JSON can't
                    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                passed[name] = value
        return passed

    def _file(self, path: str) -> tuple[bytes, str] | None:
        if path in self._static:
            return self._static[path]
        entry = None
        match = _STATIC_NAME.match(path)
        if match:
            try:
                body = resources.files("staywire").joinpath("static", match.group(1)).read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                body = None
            if body is not None:
                name = match.group(1)
                ctype = ("application/typescript" if name.endswith(".ts") else
                         mimetypes.guess_type(name)[0] or "application/octet-stream")
                if ctype.startswith("text/") or ctype.endswith("javascript"):
                    ctype += "; charset=utf-8"
                entry = (body, ctype)
        if len(self._static) < 256:
            self._static[path] = entry
        return entry
