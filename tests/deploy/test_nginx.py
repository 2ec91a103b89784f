"""The generated nginx config, run by a real nginx in front of real nodes."""

from __future__ import annotations

import asyncio
import re
import time

import jwt
import pytest
import websockets

from tests.conftest import ANON
from tests.support.nginx import NGINX, start_nginx
from tests.support.ws import connect, expect, request

pytestmark = [pytest.mark.asyncio, pytest.mark.nginx,
              pytest.mark.skipif(NGINX is None, reason="nginx is not installed")]


async def test_generated_config_proxies_websockets_and_health(server_factory) -> None:
    srv = server_factory(**ANON)
    with start_nginx([f"127.0.0.1:{srv.port}"]) as ngx:
        ngx.wait_ready()
        async with connect(ngx.url) as ws:
            await expect(ws, "welcome")
            await request(ws, {"type": "sub", "id": 1, "channel": "n"})
            await request(ws, {"type": "pub", "id": 2, "channel": "n", "data": "via nginx"})
            assert (await expect(ws, "msg"))["data"] == "via nginx"


def strip_upgrade(config: str) -> str:
    config = re.sub(r"\n\s*proxy_set_header (Upgrade|Connection) \$[a-z_]+;", "", config)
    return config.replace("proxy_http_version 1.1;", "", 1)


async def test_without_upgrade_headers_the_handshake_fails(server_factory) -> None:
    srv = server_factory(**ANON)
    with start_nginx([f"127.0.0.1:{srv.port}"], config_filter=strip_upgrade) as ngx:
        ngx.wait_ready()
        with pytest.raises((websockets.InvalidStatus, websockets.InvalidHandshake)):
            async with connect(ngx.url):
                pass


async def test_query_tokens_stay_out_of_the_access_log(server_factory) -> None:
    secret = "x" * 32
    srv = server_factory(jwt_secret=secret)
    token = jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, secret)
    with start_nginx([f"127.0.0.1:{srv.port}"]) as ngx:
        ngx.wait_ready()
        async with connect(f"{ngx.url}?token={token}") as ws:
            await expect(ws, "welcome")
        await asyncio.sleep(0.3)
        log = ngx.access_log()
        assert "/ws" in log and token not in log and "token=" not in log
    assert token not in srv.log()


async def test_client_ip_is_taken_from_the_trusted_proxy_header(server_factory) -> None:
    srv = server_factory(**ANON, trusted_proxy_header="X-Forwarded-For",
                         max_connections_per_ip=1)
    with start_nginx([f"127.0.0.1:{srv.port}"]) as ngx:
        ngx.wait_ready()
        async with connect(ngx.url) as ws:
            await expect(ws, "welcome")
            # A forged X-Forwarded-For from the client does not escape the per-IP limit:
            # nginx appends the real address and the server reads the last entry.
            with pytest.raises(websockets.InvalidStatus) as info:
                async with connect(ngx.url, additional_headers={"X-Forwarded-For": "6.6.6.6"}):
                    pass
            assert info.value.response.status_code == 503
