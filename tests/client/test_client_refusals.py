"""Publishes the server refuses for now (rate limited, broker down) are sent again with
their keys and land once; other refusals fail the publish."""

from __future__ import annotations

import asyncio

import pytest

from staywire.exceptions import RequestError
from tests.client.helpers import Collector, eventually


async def test_rate_limited_publishes_are_retried_and_land_once(server_factory,
                                                                client_factory) -> None:
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], rate_messages=20,
                         rate_burst=5)
    client = client_factory(srv.url)
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
