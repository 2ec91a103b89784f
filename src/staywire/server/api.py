"""The internal API port (127.0.0.1 by default): metrics, health checks, ``POST /api/publish``.

A small h11 server beside the WebSocket port: picows reads no request body, and
metrics and publishing are not for the public anyway.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Protocol

import h11
import msgspec
from prometheus_client import CollectorRegistry

from staywire.brokers.base import PublishResult
from staywire.config import Config
from staywire.exceptions import BrokerUnavailable
from staywire.protocol.envelope import Channel, Key
from staywire.server.metrics import render

__all__ = ["ApiHost", "start_api"]


class ApiHost(Protocol):
    """What the API port serves from: the node's settings, metrics, state and publishing."""

    config: Config
    registry: CollectorRegistry

    @property
    def ready(self) -> bool: ...

    async def publish_raw(self, channel: str, data: bytes, *, key: str | None = None
                          ) -> PublishResult: ...

class _PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    channel: Channel
    data: msgspec.Raw
    key: Key | None = None


_publish_decoder = msgspec.json.Decoder(_PublishBody)
_MAX_BODY = 1024 * 1024


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
        status, payload, ctype = await _api_route(node, request, bytes(body))
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
    if path == "/api/publish":
        if method != b"POST":
            return 405, _json_error("use POST"), "application/json"
        return await _api_publish(node, request, body)
    return 404, _json_error("not found"), "application/json"


async def _api_publish(node: ApiHost, request: h11.Request, body: bytes
                       ) -> tuple[int, bytes, str]:
    js = "application/json"
    key = node.config.api_key
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
    if len(msg.data) > node.config.max_data_size:
        return 413, _json_error("data over max_data_size"), js
    try:
        result = await node.publish_raw(msg.channel, bytes(msg.data), key=msg.key)
    except BrokerUnavailable:
        return 503, _json_error("broker unavailable; nothing was published"), js
    return 200, msgspec.json.encode({"epoch": result.epoch, "offset": result.offset,
                                     "duplicate": result.duplicate}), js
