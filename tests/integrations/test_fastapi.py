"""docs/fastapi.md's example, run as written under real uvicorn, with a real Staywire server.

The app's own login sets a cookie; a WebSocket with that cookie and no token is
identified as the user; without it the connection is refused; after logout the next
refresh ends the session.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import types
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from staywire.config import Config
from staywire.server.app import Server
from staywire_bench.ports import free_port
from tests.support.ws import closed_with, connect, expect, request

pytestmark = pytest.mark.asyncio

T = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))
DOC = Path(__file__).resolve().parents[2] / "docs" / "fastapi.md"


def example() -> types.ModuleType:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert code is not None, "docs/fastapi.md has no python example"
    module = types.ModuleType("fastapi_example")
    exec(compile(code.group(1), str(DOC), "exec"), module.__dict__)  # the doc, as written
    return module


@pytest.fixture
async def app_url() -> AsyncIterator[tuple[str, types.ModuleType]]:
    module = example()
    module.SESSION_SECONDS = 0.5  # refresh soon, so the test sees logout end the session
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(module.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.get_running_loop().create_task(server.serve())
    async with asyncio.timeout(10 * T):
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}", module
    server.should_exit = True
    async with asyncio.timeout(10 * T):
        await task


@pytest.fixture
async def staywire(app_url: tuple[str, types.ModuleType]) -> AsyncIterator[Server]:
    url, _ = app_url
    server = Server(Config(
        port=0, api_port=0, close_timeout=0.4, drain_window=0.1,
        connect_proxy_url=f"{url}/staywire/connect",
        refresh_proxy_url=f"{url}/staywire/refresh",
        subscribe_proxy_url=(f"room:* {url}/staywire/subscribe",)))
    await server.start()
    yield server
    await server.stop()


async def test_login_cookie_identifies_the_socket_and_logout_ends_it(
        app_url: tuple[str, types.ModuleType], staywire: Server) -> None:
    url, _ = app_url
    ws_url = f"ws://127.0.0.1:{staywire.port}/ws"
    async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
        assert (await http.post("/login", json={"user": "ann"})).status_code == 200
        cookie = f"session={http.cookies['session']}"
        async with connect(ws_url, additional_headers={"Cookie": cookie}) as ws:
            welcome = await expect(ws, "welcome")
            assert welcome["data"] == {"name": "ann"}
            assert (await request(ws, {"type": "sub", "id": 1, "channel": "room:ann"}))[
                "type"] == "ack"
            denied = await request(ws, {"type": "sub", "id": 2, "channel": "room:bob"})
            assert denied["code"] == "forbidden" and denied["reason"] == "not your room"
            started = time.monotonic()
            await http.post("/logout")
            assert (await closed_with(ws))[0] == 4401  # the next refresh saw the logout
            assert time.monotonic() - started < 5
        # Logged out, the reconnect is refused by the app's own session check.
        async with connect(ws_url, additional_headers={"Cookie": cookie}) as ws:
            assert await closed_with(ws) == (4503, "log in first")


async def test_no_cookie_is_refused(staywire: Server) -> None:
    async with connect(f"ws://127.0.0.1:{staywire.port}/ws") as ws:
        assert await closed_with(ws) == (4503, "log in first")


async def test_the_python_client_sends_the_login_cookie_and_stops_once_logged_out(
        app_url: tuple[str, types.ModuleType], staywire: Server) -> None:
    # A service that logged in through the app itself: its cookie is its credential, so
    # a 4401 (the session's expiry passed) is a reason to ask again, not to stop; the
    # app's refusal after the logout (4503) is.
    from staywire import Client
    from staywire.exceptions import Unauthorized

    url, _ = app_url
    async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
        assert (await http.post("/login", json={"user": "ann"})).status_code == 200
        cookie = f"session={http.cookies['session']}"
        client = Client(f"ws://127.0.0.1:{staywire.port}/ws", headers={"Cookie": cookie},
                        ping_interval=None, backoff_base=0.05, max_retries=3)
        try:
            async with asyncio.timeout(10 * T):
                await client.connect()
                assert client.welcome is not None and client.welcome.data == {"name": "ann"}
                await http.post("/logout")
                with pytest.raises(Unauthorized) as refused:
                    await client.wait_closed()
            assert (refused.value.code, refused.value.reason) == (4503, "log in first")
            assert client.stats["connects"] == 1
            assert client.last_close is not None and client.last_close.code == 4503
        finally:
            await client.close()
