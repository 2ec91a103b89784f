"""The internal API port (127.0.0.1 by default): metrics, health checks and the server API.

A small h11 server beside the WebSocket port: picows reads no request body, and
metrics and the API are not for the public anyway. This module is HTTP only: the
key, the routes and the status codes; what each ``POST /api/<method>`` does is
``api_methods.py`` (docs/api.md).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import urllib.parse
from typing import Protocol

import h11
import msgspec
from prometheus_client import CollectorRegistry

from staywire.config import Config
from staywire.protocol.codes import ErrorCode
from staywire.server.api_methods import ApiFailure, ApiMethods
from staywire.server.metrics import render
from staywire.server.admin import admin_asset
from staywire.server.openapi import openapi

log = logging.getLogger("staywire.server")

__all__ = ["ApiHost", "start_api"]


class ApiHost(Protocol):
    """What the API port serves from: the node's settings, metrics, state and API methods."""

    config: Config
    registry: CollectorRegistry

    @property
    def ready(self) -> bool: ...

    @property
    def api_methods(self) -> ApiMethods: ...


_MAX_BODY = 1024 * 1024
_JSON = "application/json"
_PREFIX = "/api/"


async def start_api(node: ApiHost, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve_http(node, reader, writer)
        except (ConnectionError, asyncio.TimeoutError, h11.ProtocolError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, reuse_address=True)


async def _serve_http(node: ApiHost, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    try:
        await _serve_requests(node, conn, reader, writer)
    except h11.RemoteProtocolError as exc:
        # Not HTTP/1.1 (or headers over 16 KiB): answered, as h11 suggests, before closing.
        failure = ApiFailure(ErrorCode.BAD_REQUEST, f"bad HTTP request: {exc}",
                             exc.error_status_hint)
        try:
            await _send(writer, conn, failure.status, failure.body())
        except h11.LocalProtocolError:
            pass  # a response had started: nothing more can be said


async def _serve_requests(node: ApiHost, conn: h11.Connection, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
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
                    failure = ApiFailure(ErrorCode.BAD_REQUEST, "body over 1 MiB", 413)
                    await _send(writer, conn, 413, failure.body())
                    return
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if request is None:
            return
        try:
            status, payload, ctype = await _api_route(node, request, bytes(body))
        except Exception:
            # A bug in one method must not cost the port: the request gets a 500 with no
            # details (they are logged), and the server goes on serving.
            log.exception("API request failed: %s", request.target[:200].decode("latin-1"))
            status, ctype = 500, _JSON
            payload = ApiFailure(ErrorCode.INTERNAL, "internal error").body()
        await _send(writer, conn, status, payload, ctype)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


# On every answer of the port: the admin page loads only its own files and runs in no frame,
# and no answer (keys in the admin page's requests, users in the replies) is cached.
_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


async def _send(writer: asyncio.StreamWriter, conn: h11.Connection, status: int, payload: bytes,
                ctype: str = _JSON) -> None:
    headers = [("Content-Type", ctype), ("Content-Length", str(len(payload))), *_HEADERS]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    writer.write(conn.send(h11.Data(data=payload)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


async def _api_route(node: ApiHost, request: h11.Request, body: bytes
                     ) -> tuple[int, bytes, str]:
    path = request.target.decode("latin-1").split("?", 1)[0]
    method = request.method
    text = "text/plain; charset=utf-8"
    if method == b"GET" and path == "/metrics":
        return 200, render(node.registry), "text/plain; version=0.0.4; charset=utf-8"
    if method == b"GET" and path == "/healthz":
        return 200, b"ok\n", text
    if method == b"GET" and path == "/readyz":
        return (200, b"ready\n", text) if node.ready else (503, b"not ready\n", text)
    if path == "/admin" or path.startswith("/admin/"):
        if method != b"GET":
            return _fail(ApiFailure(ErrorCode.BAD_REQUEST, "use GET", 405))
        asset = admin_asset(path)
        if asset is None:
            return _fail(ApiFailure(ErrorCode.UNKNOWN_METHOD, "not found"))
        return 200, *asset
    if path == "/api/openapi.json":
        if method != b"GET":
            return _fail(ApiFailure(ErrorCode.BAD_REQUEST, "use GET", 405))
        return 200, _openapi_body(), _JSON
    if not path.startswith(_PREFIX):
        return _fail(ApiFailure(ErrorCode.UNKNOWN_METHOD, "not found"))
    if method != b"POST":
        return _fail(ApiFailure(ErrorCode.BAD_REQUEST, "use POST", 405))
    key = node.config.api_key
    if not key:
        return _fail(ApiFailure(ErrorCode.FORBIDDEN, "the server API is off: set api_key"))
    auth = dict(request.headers).get(b"authorization", b"")
    presented = auth[7:] if auth[:7].lower() == b"bearer " else b""
    # Constant-time comparison: response timing must not reveal how much of a guess matched.
    if not hmac.compare_digest(presented, key.encode()):
        return _fail(ApiFailure(ErrorCode.UNAUTHORIZED, "missing or wrong API key"))
    try:
        if path == "/api/publish" and _content_type(request) == b"application/octet-stream":
            channel, key = _binary_target(request)
            return 200, await node.api_methods.publish_bytes(channel, body, key), _JSON
        return 200, await node.api_methods.call(path[len(_PREFIX):], body), _JSON
    except ApiFailure as failure:
        return _fail(failure)


def _content_type(request: h11.Request) -> bytes:
    for name, value in request.headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return b""


def _binary_target(request: h11.Request) -> tuple[str | None, str | None]:
    """A binary publish's channel and key: from the query (``?channel=&key=``), else from
    the ``Staywire-Channel`` and ``Staywire-Key`` headers (docs/api.md)."""
    target = request.target.decode("latin-1")
    query = (urllib.parse.parse_qs(target.split("?", 1)[1], keep_blank_values=True)
             if "?" in target else {})
    headers = {name: value for name, value in request.headers}

    def pick(field: str, header: bytes) -> str | None:
        if field in query:
            return query[field][0]
        value = headers.get(header)
        return None if value is None else value.decode("utf-8", "replace")

    return pick("channel", b"staywire-channel"), pick("key", b"staywire-key")


def _fail(failure: ApiFailure) -> tuple[int, bytes, str]:
    return failure.status, failure.body(), _JSON


@functools.cache
def _openapi_body() -> bytes:
    return msgspec.json.encode(openapi())
