"""The connect proxy over real sockets: the backend's cookie session authenticates a socket.

A WebSocket connection with no token is sent to ``connect_proxy_url`` with its
allow-listed headers; the answer identifies it, or refuses it with a close code.
Refusal, timeouts, malformed answers, an outage (1013, /readyz 200, open connections
kept) and the recovery from it are cells of test_grid.py.
"""

from __future__ import annotations

import time

import pytest

from tests.proxy.backend import SLOW, Backend
from tests.support.ws import closed_with, connect, expect, request

pytestmark = pytest.mark.asyncio

COOKIE = {"Cookie": "sessionid=abc123", "Authorization": "Bearer xyz",
          "X-Secret-Internal": "not for the backend"}


def ws_url(server) -> str:  # type: ignore[no-untyped-def]
    return f"ws://127.0.0.1:{server.port}/ws"


async def test_allow_identifies_the_user_with_grants_and_data(backend: Backend, staywire) -> None:
    backend.answer["connect"] = {"result": {"user": "42", "channels": ["room:*"],
                                            "data": {"name": "Ann"}}}
    server = await staywire(connect_proxy_url=f"{backend.url}/connect")
    async with connect(ws_url(server) + "?client=c-1", additional_headers=COOKIE) as ws:
        welcome = await expect(ws, "welcome")
        assert welcome["data"] == {"name": "Ann"} and welcome["expires_at"] is None
        ok = await request(ws, {"type": "sub", "id": 1, "channel": "room:1"})
        assert ok["type"] == "ack"
        no = await request(ws, {"type": "sub", "id": 2, "channel": "other"})
        assert no["code"] == "forbidden"  # the grants the backend gave, and no more
    body = backend.seen["connect"][0]
    # The allow-list: Cookie and Authorization, nothing else, and never the query string.
    assert body["headers"] == {"Cookie": "sessionid=abc123", "Authorization": "Bearer xyz"}
    assert set(body) == {"client", "ip", "headers", "transport", "protocol"}
    assert body["ip"] == "127.0.0.1" and body["client"] == welcome["client"]


async def test_forward_list_is_configurable(backend: Backend, staywire) -> None:
    backend.answer["connect"] = {"result": {"user": "42"}}
    server = await staywire(connect_proxy_url=f"{backend.url}/connect",
                            proxy_forward_headers=("X-Secret-Internal",))
    async with connect(ws_url(server), additional_headers=COOKIE) as ws:
        await expect(ws, "welcome")
    assert backend.seen["connect"][0]["headers"] == {"X-Secret-Internal": "not for the backend"}


async def test_a_query_token_goes_to_the_token_path_not_the_backend(backend: Backend,
                                                                    staywire) -> None:
    server = await staywire(connect_proxy_url=f"{backend.url}/connect")
    async with connect(ws_url(server) + "?token=secret-token", additional_headers=COOKIE) as ws:
        assert (await closed_with(ws))[0] == 4501  # no authenticator for tokens here
    assert backend.seen["connect"] == []


async def test_concurrency_bound_fails_fast(backend: Backend, staywire) -> None:
    backend.answer["connect"] = SLOW
    backend.after_slow["connect"] = {"result": {"user": "42"}}
    server = await staywire(connect_proxy_url=f"{backend.url}/connect", proxy_timeout=3.0,
                            proxy_max_concurrency=1)
    async with connect(ws_url(server)) as first:
        await backend.wait_seen("connect")
        started = time.monotonic()
        async with connect(ws_url(server)) as second:
            assert (await closed_with(second))[0] == 1013
        assert time.monotonic() - started < 1.5  # failed at once, did not queue
        backend.release.set()
        await expect(first, "welcome")
    assert len(backend.seen["connect"]) == 1
