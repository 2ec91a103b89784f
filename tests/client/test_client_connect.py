"""Connecting, the three ways to authenticate, states, terminal closes, RPC, CLI-free basics.

Every test runs a real ``staywire serve`` process (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from staywire.client import AuthMode, ConnectionState, Message
from staywire.exceptions import (
    ConnectionClosed,
    ReconnectFailed,
    RequestError,
    RequestTimeout,
    Unauthorized,
)
from tests.client.helpers import SECRET, Collector, eventually, make_token
from tests.support.servers import free_port, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def jwt_server(server_factory):
    return server_factory(jwt_secret=SECRET)


@pytest.mark.parametrize("mode", list(AuthMode))
async def test_each_auth_mode_is_welcomed_and_the_provider_is_called_per_connect(
    jwt_server, client_factory, mode
):
    calls = 0

    async def get_token() -> str:
        nonlocal calls
        calls += 1
        return make_token("alice")

    client = client_factory(jwt_server.url, token_provider=get_token, auth=mode)
    await client.connect()
    assert client.state is ConnectionState.OPEN
    assert client.welcome is not None and client.welcome.expires_at is not None
    assert calls == 1
    async with client.subscribe("room:1") as sub:
        collector = Collector(sub)
        assert await client.publish("room:1", {"text": "hi"}) == 1
        await eventually(lambda: collector.data() == [{"text": "hi"}], what="own message")
    await client.close()
    assert client.state is ConnectionState.CLOSED
    assert client.last_close is not None and client.last_close.code == 1000


@pytest.mark.parametrize("mode", list(AuthMode))
async def test_bad_token_raises_unauthorized_4501_without_a_reconnect_loop(
    jwt_server, client_factory, mode
):
    changes = []
    client = client_factory(jwt_server.url, token="not-a-jwt", auth=mode,
                            on_state_change=changes.append)
    with pytest.raises(Unauthorized) as info:
        await client.connect()
    assert info.value.code == 4501
    assert client.state is ConnectionState.CLOSED
    assert [c.state for c in changes] == [ConnectionState.CONNECTING, ConnectionState.CLOSED]
    with pytest.raises(Unauthorized):
        await client  # awaiting the client raises the terminal error too
    with pytest.raises(Unauthorized):
        await client.publish("room:1", 1)


async def test_states_are_observable_by_callback_and_iterator(anon_server, client_factory,
                                                              proxy_factory):
    proxy = await proxy_factory(anon_server.port)
    seen = []
    client = client_factory(proxy.url, on_state_change=seen.append)
    changes = client.state_changes()
    await client.connect()
    proxy.reset_all()
    await eventually(lambda: client.state is ConnectionState.OPEN and client.stats["connects"] == 2,
                     what="reconnect")
    await client.close()
    observed = [c async for c in changes]
    states = [c.state for c in observed]
    assert states == [ConnectionState.CONNECTING, ConnectionState.OPEN,
                      ConnectionState.RECONNECTING, ConnectionState.OPEN, ConnectionState.CLOSED]
    assert seen == observed
    lost = observed[2]
    assert lost.close is not None and lost.close.code == 1006 and lost.attempt == 1
    assert lost.delay is not None and 0.025 <= lost.delay < 0.075  # 0.05 s base, jittered
    assert client.last_close is not None and client.last_close.code == 1000


async def test_server_close_1000_is_final(anon_server, client_factory):
    """1000 does not reconnect; SIGKILL gives 1006, which does (a different test)."""
    client = client_factory(anon_server.url)
    await client.connect()
    client._link.close(1000, "bye")  # as if the server had ended it normally
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(client.wait_closed(), 5)
    assert info.value.code == 1000
    assert client.state is ConnectionState.CLOSED


async def test_rpc_result_error_and_timeout(client_factory, tmp_path):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.client.rpc_server", str(port), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", 15)
        client = client_factory(f"ws://127.0.0.1:{port}/ws")
        await client.connect()
        assert await client.rpc("add", {"a": 2, "b": 40}) == {"sum": 42}
        with pytest.raises(RequestError) as info:
            await client.rpc("nope", 1)
        assert info.value.code == "unknown_method"
        with pytest.raises(RequestError) as info:
            await client.rpc("add", {"a": "x"})
        assert info.value.code == "invalid_params"
    finally:
        proc.kill()
        await proc.wait()
    # the server is gone: an RPC waits for OPEN, bounded by its timeout
    await eventually(lambda: client.state is ConnectionState.RECONNECTING)
    with pytest.raises(RequestTimeout):
        await client.rpc("add", {"a": 1, "b": 1}, timeout=0.3)


async def test_forbidden_channel_fails_the_subscription_and_publish(server_factory,
                                                                  client_factory):
    srv = server_factory(jwt_secret=SECRET)
    client = client_factory(srv.url, token=make_token("bob", channels=["room:*"]))
    await client.connect()
    with pytest.raises(RequestError) as info:
        async with client.subscribe("secret:1"):
            pass
    assert info.value.code == "forbidden"
    with pytest.raises(RequestError):
        await client.publish("secret:1", 1)
    assert client.outbox_size == 0  # a refused publish is not kept for replay
    assert client.state is ConnectionState.OPEN


async def test_two_local_subscriptions_share_one_server_subscription(anon_server, client_factory):
    client = client_factory(anon_server.url)
    await client.connect()
    async with client.subscribe("room:1") as a, client.subscribe("room:1") as b:
        ca, cb = Collector(a), Collector(b)
        for i in range(3):
            await client.publish("room:1", i)
        await eventually(lambda: ca.data() == [0, 1, 2] and cb.data() == [0, 1, 2])
    async with client.subscribe("room:1") as again:  # re-subscribing after leaving works
        await client.publish("room:1", "x")
        item = await asyncio.wait_for(again.__anext__(), 5)
        assert isinstance(item, Message) and item.data == "x"


async def test_retry_limit_surfaces_reconnect_failed_everywhere(anon_server, client_factory):
    """max_retries failures in a row: CLOSED, and every waiter hears ReconnectFailed."""
    changes = []
    client = client_factory(anon_server.url, max_retries=3, backoff_base=0.02,
                            on_state_change=changes.append)
    await client.connect()
    async with client.subscribe("room:1") as sub:
        collector = Collector(sub)
        anon_server.kill()  # and it never comes back
        pending = asyncio.create_task(client.publish("room:1", "lost?"))
        with pytest.raises(ReconnectFailed) as info:
            await asyncio.wait_for(client.wait_closed(), 5)
        assert info.value.attempts == 3 and info.value.code == 1006
        assert "connect failed" in info.value.reason
        with pytest.raises(ReconnectFailed):
            await pending
        await asyncio.wait_for(collector.task, 1)
        assert isinstance(collector.error, ReconnectFailed)
    with pytest.raises(ReconnectFailed):
        await client.publish("room:1", "after")
    assert client.state is ConnectionState.CLOSED
    attempts = [c.attempt for c in changes if c.state is ConnectionState.RECONNECTING]
    assert attempts == [1, 2, 3]


async def test_a_policy_callable_replaces_the_backoff(anon_server, client_factory):
    asked: list[int] = []

    def policy(attempt: int) -> float | None:
        asked.append(attempt)
        return 0.01 if attempt < 2 else None  # one quick retry, then give up

    client = client_factory(anon_server.url, reconnect_policy=policy)
    await client.connect()
    anon_server.kill()
    with pytest.raises(ReconnectFailed) as info:
        await asyncio.wait_for(client.wait_closed(), 5)
    assert asked == [1, 2] and info.value.attempts == 1
