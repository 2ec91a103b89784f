"""Origin allow-list, subprotocol, capacity: decided at the handshake, over real sockets."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from tests.support.servers import metric
from tests.support.ws import connect, expect

pytestmark = pytest.mark.asyncio


async def status_of(url: str, **kwargs: object) -> int:
    try:
        async with connect(url, **kwargs):
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


async def test_browser_origins_are_denied_by_default(server_factory) -> None:
    srv = server_factory(allow_anonymous=True)
    assert await status_of(srv.url, origin="https://evil.example") == 403
    await asyncio.sleep(0.1)
    log = srv.log()
    assert "refused handshake" in log and "reason=origin" in log and "evil.example" in log
    assert metric(srv.api, "staywire_handshake_rejections_total", 'reason="origin"') == 1


async def test_allow_list_exact_and_wildcard(server_factory) -> None:
    srv = server_factory(allow_anonymous=True,
                         allowed_origins=["http://app.example.com", "https://*.example.org"])
    assert await status_of(srv.url, origin="http://app.example.com") == 101
    assert await status_of(srv.url, origin="https://a.b.example.org") == 101
    assert await status_of(srv.url, origin="https://example.org") == 403  # not a subdomain
    assert await status_of(srv.url, origin="http://a.example.org") == 403  # wrong scheme
    assert await status_of(srv.url, origin="http://app.example.com:8080") == 403  # wrong port
    assert await status_of(srv.url, origin="null") == 403


async def test_no_origin_header_is_a_non_browser_client_and_allowed(anon_server) -> None:
    async with connect(anon_server.url) as ws:
        welcome = await expect(ws, "welcome")
        assert welcome["client"] and welcome["session"]
        assert ws.subprotocol == "staywire.v1"


async def test_plain_client_without_subprotocol_is_accepted(anon_server) -> None:
    async with connect(anon_server.url, subprotocols=None) as ws:
        assert (await expect(ws))["type"] == "welcome"


async def test_foreign_subprotocol_gets_400(anon_server) -> None:
    assert await status_of(anon_server.url, subprotocols=["graphql-ws"]) == 400


async def test_connection_limits_give_503(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, max_connections_per_ip=2)
    async with connect(srv.url) as a, connect(srv.url) as b:
        await expect(a, "welcome")
        await expect(b, "welcome")
        assert await status_of(srv.url) == 503
    srv2 = server_factory(allow_anonymous=True, max_connections=1)
    async with connect(srv2.url) as a:
        await expect(a, "welcome")
        assert await status_of(srv2.url) == 503
    assert metric(srv2.api, "staywire_handshake_rejections_total", 'reason="capacity"') == 1


async def test_unknown_path_is_404(anon_server) -> None:
    assert await status_of(anon_server.url.replace("/ws", "/nope")) == 404


async def raw_status(url: str, connection_lines: list[str]) -> int:
    """The status of a hand-written upgrade request with the given Connection lines."""
    host, _, rest = url.removeprefix("ws://").partition(":")
    port, _, path = rest.partition("/")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = [f"GET /{path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                *connection_lines, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return int(status_line.split()[1])
    finally:
        writer.close()


@pytest.mark.parametrize("lines", [
    ["Connection: keep-alive, Upgrade"],  # Firefox
    ["Connection: upgrade"],
    ["Connection: Upgrade, HTTP2-Settings"],
    ["Connection: keep-alive", "Connection: Upgrade"],  # two lines make one list
])
async def test_connection_is_a_token_list(anon_server, lines: list[str]) -> None:
    assert await raw_status(anon_server.url, lines) == 101


@pytest.mark.parametrize("lines", [["Connection: keep-alive"], ["Connection: upgraded"], []])
async def test_connection_without_the_upgrade_token_gets_400(anon_server, lines) -> None:
    assert await raw_status(anon_server.url, lines) == 400
