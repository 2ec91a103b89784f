"""ProxyClient against a real HTTP backend: keep-alive, retries only where idempotent."""

from __future__ import annotations

import pytest

from staywire.exceptions import ProxyUnavailable
from staywire.proxy.client import ProxyClient
from staywire.proxy.schema import ChannelRequest, ChannelResponse, ChannelResult
from tests.proxy.backend import Backend

pytestmark = pytest.mark.asyncio


def body() -> ChannelRequest:
    return ChannelRequest("c1", "127.0.0.1", {}, "42", "room:1")


async def test_calls_reuse_one_connection(backend: Backend) -> None:
    client = ProxyClient(timeout=2.0)
    try:
        for _ in range(10):
            answer = await client.call("subscribe", f"{backend.url}/subscribe", body(),
                                       ChannelResponse)
            assert isinstance(answer.result, ChannelResult)
    finally:
        await client.close()
    assert len(backend.seen["subscribe"]) == 10
    assert len(backend.peers) == 1  # keep-alive: one TCP connection for ten calls


async def test_idempotent_events_retry_after_503_others_never(backend: Backend) -> None:
    def flaky(_: dict) -> object:  # type: ignore[type-arg]
        return 503 if len(backend.seen["subscribe"]) + len(backend.seen["publish"]) < 3 \
            else {"result": {}}

    backend.answer["subscribe"] = flaky
    backend.answer["publish"] = 503
    client = ProxyClient(timeout=2.0, retries=2, random=lambda: 0.5)
    try:
        answer = await client.call("subscribe", f"{backend.url}/subscribe", body(),
                                   ChannelResponse)
        assert answer.result is not None
        assert len(backend.seen["subscribe"]) == 3  # two 503s, then the answer
        with pytest.raises(ProxyUnavailable, match="status_5xx"):
            await client.call("publish", f"{backend.url}/publish", body(), ChannelResponse)
        assert len(backend.seen["publish"]) == 1
    finally:
        await client.close()
    assert client.outcomes[("subscribe", "ok")] == 1
    assert client.outcomes[("publish", "status_5xx")] == 1


async def test_unreachable_is_retried_then_reported(backend: Backend) -> None:
    await backend.stop()
    client = ProxyClient(timeout=2.0, retries=2, breaker_failures=1)
    try:
        with pytest.raises(ProxyUnavailable, match="unreachable"):
            await client.call("connect", f"{backend.url}/connect", body(), ChannelResponse)
        with pytest.raises(ProxyUnavailable, match="circuit_open"):
            await client.call("connect", f"{backend.url}/connect", body(), ChannelResponse)
    finally:
        await client.close()
