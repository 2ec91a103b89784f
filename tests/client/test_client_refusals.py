"""Publishes the server refuses for now (rate limited, broker down) are sent again with
their keys and land once; other refusals fail the publish."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from staywire.client import ConnectionState
from staywire.exceptions import RequestError
from tests.client.helpers import Collector, eventually
from tests.support.servers import metric


async def test_publishes_are_paced_under_the_announced_rate_limit_and_land_in_order(
        server_factory, client_factory) -> None:
    """The welcome announces the server's limits; the client waits for its turn instead of
    being refused, so a burst far over the limit lands whole and in call order, even right
    after other requests (subscribes) took their share of the same bucket."""
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], rate_messages=20,
                         rate_burst=5)
    client = client_factory(srv.url)
    await client.connect()
    assert client.welcome is not None and client.welcome.rate_limit is not None
    assert (client.welcome.rate_limit.messages, client.welcome.rate_limit.burst) == (20, 5)
    async with (client.subscribe("paced") as sub, client.subscribe("other:1"),
                client.subscribe("other:2")):
        collector = Collector(sub)
        offsets = await asyncio.wait_for(
            asyncio.gather(*(client.publish("paced", {"i": i}) for i in range(40))), 20)
        assert offsets == list(range(1, 41))  # publish i landed i-th: order kept
        assert client.stats.get("refused_retried", 0) == 0  # nothing was refused
        assert client.stats["paced"] > 0  # the pacer really held some back
        await eventually(lambda: len(collector.messages) == 40, 5)
        assert [m.data["i"] for m in collector.messages] == list(range(40))
        await collector.stop()
    assert metric(srv.api, "staywire_rate_limited_total") == 0


async def test_rate_limited_publishes_are_retried_and_land_once(server_factory,
                                                                client_factory) -> None:
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], rate_messages=20,
                         rate_burst=5)
    client = client_factory(srv.url, pace_publishes=False)  # over the limit on purpose
    await client.connect()
    async with client.subscribe("rl") as sub:
        collector = Collector(sub)
        offsets = await asyncio.wait_for(
            asyncio.gather(*(client.publish("rl", {"i": i}) for i in range(40))), 20)
        assert sorted(offsets) == list(range(1, 41))  # each landed exactly once
        assert client.stats["refused_retried"] > 0  # the limiter really refused some
        await eventually(lambda: len(collector.messages) == 40, 5)
        assert sorted(m.data["i"] for m in collector.messages) == list(range(40))
        assert collector.offsets() == list(range(1, 41))
        await collector.stop()


async def test_other_refusals_fail_the_publish(server_factory, client_factory) -> None:
    srv = server_factory(allow_anonymous=True, anonymous_channels=["room:*"])
    client = client_factory(srv.url)
    await client.connect()
    with pytest.raises(RequestError) as info:
        await client.publish("admin", 1)
    assert info.value.code == "forbidden"


async def test_resubscribing_to_many_channels_after_a_restart_is_paced_not_refused(
        server_factory, client_factory) -> None:
    """100 channels (the default max_subscriptions) after a server restart: every one is
    resubscribed, and resynced to the new epoch (unsub, then sub), which is more requests
    at once than the server's burst. Sent at the announced pace, none is refused; before,
    the burst earned the client a 4029 close on every restart."""
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"])
    changes = []
    client = client_factory(srv.url, on_state_change=changes.append)
    await client.connect()
    async with contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(client.subscribe(f"ch:{i}")) for i in range(100)]
        await asyncio.gather(*(client.publish(f"ch:{i}", i) for i in range(100)))
        srv.restart()
        await eventually(lambda: client.stats["connects"] == 2 and
                         client.state is ConnectionState.OPEN, 10, "the reconnect")
        await client.publish("ch:99", "after")  # paced behind the resubscribes
        async with asyncio.timeout(10):
            while getattr(await anext(aiter(subs[99])), "data", None) != "after":
                pass  # skips the Recovery item the new epoch brings
    assert [c.close.code for c in changes if c.close is not None] == [1006]  # no 4029
    assert metric(srv.api, "staywire_rate_limited_total") == 0
    assert client.stats["connects"] == 2
