"""HTTP beside the WebSocket endpoint.

* On the WebSocket port, picows hands every request to ``Router``: the upgrade
  on ``ws_path`` (Origin, capacity, subprotocol, credentials are checked here,
  before any application code runs), and plain GETs for health checks and the
  browser client's static files.
* On the internal API port (127.0.0.1 by default), a small h11 server answers
  ``/metrics``, the health checks and ``POST /api/publish``: picows reads no
  request body, and metrics and publishing are not for the public anyway.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import mimetypes
import re
import time
from importlib import resources
from typing import TYPE_CHECKING

import h11
import msgspec

from staywire.exceptions import BrokerUnavailable
from staywire.protocol.envelope import SUBPROTOCOL, Channel, Key
from staywire.server.auth import cookie_token, query_params, redact
from staywire.server.connection import Connection
from staywire.server.echo import EchoConnection
from staywire.server.metrics import render
from staywire.server.transport import Request, accept, reject, respond

if TYPE_CHECKING:
    from staywire.server.app import Server

__all__ = ["Router", "start_api"]

log = logging.getLogger("staywire.server")

_STATIC_NAME = re.compile(
    r"^/([A-Za-z0-9_\-]+(?:\.d)?\.(?:js|mjs|css|html|ts|svg|png|ico|json))$")


class Router:
    """picows' listener factory: decides what each HTTP request on the WebSocket port gets."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._static: dict[str, tuple[bytes, str] | None] = {}

    def __call__(self, request: Request, peer: str) -> object:
        target = request.path.decode("latin-1")
        path = target.split("?", 1)[0]
        server = self.server
        if path == server.config.ws_path:
            return self._upgrade(request, target, peer)
        if path == server.config.echo_path and path is not None:
            if not server.origins.allows(request.headers.get("Origin")):
                return self._refuse(403, "origin", peer, target)
            return accept(EchoConnection(server), None)
        if request.method != b"GET":
            return respond(405, b"method not allowed\n", "text/plain", {"Allow": "GET"})
        if path == "/healthz":
            return respond(200, b"ok\n", "text/plain")
        if path == "/readyz":
            if server.ready:
                return respond(200, b"ready\n", "text/plain")
            return respond(503, b"draining\n" if server.draining else b"broker unavailable\n",
                           "text/plain")
        if path == "/" and server.config.demo:
            path = "/index.html"
        static = self._file(path)
        if static is not None:
            body, ctype = static
            return respond(200, body, ctype)
        return respond(404, b"not found\n", "text/plain")

    def _refuse(self, status: int, reason: str, peer: str, target: str, detail: str = "") -> object:
        self.server.stats.rejections[reason] += 1
        log.warning("refused handshake ip=%s target=%s status=%d reason=%s%s", peer,
                    redact(target), status, reason, f" ({detail})" if detail else "")
        return reject(status, f"{reason}\n")

    def _upgrade(self, request: Request, target: str, peer: str) -> object:
        server = self.server
        cfg = server.config
        headers = request.headers
        ip = peer
        if cfg.trusted_proxy_header:
            forwarded = headers.get(cfg.trusted_proxy_header)
            if forwarded:
                # The right-most entry was added by our own proxy; the others are the
                # client's word and could be forged.
                ip = forwarded.split(",")[-1].strip() or peer
        origin = headers.get("Origin")
        if not server.origins.allows(origin):
            return self._refuse(403, "origin", ip, target, f"origin {origin[:200]!r} not allowed"
                                if origin else "")
        if server.draining:
            return self._refuse(503, "draining", ip, target)
        if not server.handshakes.take(ip, time.monotonic()):
            return self._refuse(429, "handshake_rate", ip, target)
        if len(server.connections) >= cfg.max_connections:
            return self._refuse(503, "capacity", ip, target)
        if server.per_ip[ip] >= cfg.max_connections_per_ip:
            return self._refuse(503, "per_ip_limit", ip, target)
        offered = headers.get("Sec-WebSocket-Protocol")
        subprotocol = None
        if offered is not None:
            names = [p.strip() for p in offered.split(",")]
            if SUBPROTOCOL not in names:
                return self._refuse(400, "subprotocol", ip, target,
                                    f"offered {offered[:100]!r}, need {SUBPROTOCOL}")
            subprotocol = SUBPROTOCOL
        params = query_params(target)
        token = params.get("token") or cookie_token(headers.get("Cookie"), cfg.cookie_name)
        session = params.get("session")
        if session is not None and not re.fullmatch(r"[0-9a-f]{1,64}", session):
            session = None
        return accept(Connection(server, ip, token, session), subprotocol)

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


# ---------------------------------------------------------------------- internal API port


class _PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    channel: Channel
    data: msgspec.Raw
    key: Key | None = None


_publish_decoder = msgspec.json.Decoder(_PublishBody)
_MAX_BODY = 1024 * 1024


async def start_api(server: Server, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve_http(server, reader, writer)
        except (ConnectionError, asyncio.TimeoutError, h11.ProtocolError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, reuse_address=True)


async def _serve_http(server: Server, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    while True:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), timeout=10.0)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    await _send(writer, conn, 413, b'{"error":"body too large"}')
                    return
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if request is None:
            return
        status, payload, ctype = await _api_route(server, request, bytes(body))
        await _send(writer, conn, status, payload, ctype)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


async def _send(writer: asyncio.StreamWriter, conn: h11.Connection, status: int, payload: bytes,
                ctype: str = "application/json") -> None:
    headers = [("Content-Type", ctype), ("Content-Length", str(len(payload)))]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    writer.write(conn.send(h11.Data(data=payload)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


def _json_error(message: str) -> bytes:
    return msgspec.json.encode({"error": message})


async def _api_route(server: Server, request: h11.Request, body: bytes
                     ) -> tuple[int, bytes, str]:
    path = request.target.decode("latin-1").split("?", 1)[0]
    method = request.method
    text = "text/plain; charset=utf-8"
    if method == b"GET" and path == "/metrics":
        return 200, render(server.registry), "text/plain; version=0.0.4; charset=utf-8"
    if method == b"GET" and path == "/healthz":
        return 200, b"ok\n", text
    if method == b"GET" and path == "/readyz":
        return (200, b"ready\n", text) if server.ready else (503, b"not ready\n", text)
    if path == "/api/publish":
        if method != b"POST":
            return 405, _json_error("use POST"), "application/json"
        return await _api_publish(server, request, body)
    return 404, _json_error("not found"), "application/json"


async def _api_publish(server: Server, request: h11.Request, body: bytes
                       ) -> tuple[int, bytes, str]:
    js = "application/json"
    key = server.config.api_key
    if not key:
        return 403, _json_error("the publish API is off: set api_key"), js
    auth = dict(request.headers).get(b"authorization", b"")
    presented = auth[7:] if auth[:7].lower() == b"bearer " else b""
    # Constant-time comparison: response timing must not reveal how much of a guess matched.
    if not hmac.compare_digest(presented, key.encode()):
        return 401, _json_error("missing or wrong API key"), js
    try:
        msg = _publish_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return 400, _json_error(str(exc)), js
    if len(msg.data) > server.config.max_data_size:
        return 413, _json_error("data over max_data_size"), js
    try:
        result = await server.publish_raw(msg.channel, bytes(msg.data), key=msg.key)
    except BrokerUnavailable:
        return 503, _json_error("broker unavailable; nothing was published"), js
    return 200, msgspec.json.encode({"epoch": result.epoch, "offset": result.offset,
                                     "duplicate": result.duplicate}), js
