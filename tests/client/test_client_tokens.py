"""Tokens that expire: refreshed in band before ``exp``; after a 4401, a new one.

The server runs with ``--jwt-secret``; tokens are real HS256 JWTs made with PyJWT."""

from __future__ import annotations

import asyncio

import pytest

from staywire.client import ConnectionState
from staywire.exceptions import ConnectionClosed, RequestError
from tests.client.helpers import SECRET, eventually, make_token


@pytest.fixture
def jwt_server(server_factory):
    return server_factory(jwt_secret=SECRET)


async def test_expiring_token_is_refreshed_in_band_without_a_reconnect(jwt_server,
                                                                       client_factory):
    calls = 0

    async def get_token() -> str:
        nonlocal calls
        calls += 1
        return make_token("alice", ttl=2)  # exp has 1 s granularity: 1 to 2 s left

    changes = []
    client = client_factory(jwt_server.url, token_provider=get_token,
                            on_state_change=changes.append)
    await client.connect()
    first_exp = client.welcome.expires_at
    await asyncio.sleep(3.2)  # past the first token's exp, and the next one's
    assert client.state is ConnectionState.OPEN
    assert client.stats["connects"] == 1, "the connection was replaced, not refreshed"
    refreshes = client.stats["refreshes"]
    assert refreshes >= 1
    assert calls - 1 - refreshes in (0, 1)  # the provider was asked for each (one may be due)
    assert client.welcome.expires_at > first_exp
    assert [c.state for c in changes] == [ConnectionState.CONNECTING, ConnectionState.OPEN]
    assert await client.publish("room:1", "still authorized") >= 1


async def test_4401_reconnects_with_a_new_token_but_a_fixed_token_is_final(jwt_server,
                                                                          client_factory):
    async def get_token() -> str:
        if renewing.state is ConnectionState.OPEN:
            return make_token("mallory")  # an in-band refresh for another user: refused
        if renewing.stats["connects"] == 0:
            return make_token("alice", ttl=1)  # the first connection: expires soon
        return make_token("alice")  # after the 4401

    changes = []
    renewing = client_factory(jwt_server.url, token_provider=get_token,
                              on_state_change=changes.append)
    fixed = client_factory(jwt_server.url, token=make_token("bob", ttl=1))
    await asyncio.gather(renewing.connect(), fixed.connect())

    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(fixed.wait_closed(), 5)
    assert info.value.code == 4401  # nothing can renew a fixed token: surfaced, not looped
    assert fixed.state is ConnectionState.CLOSED

    await eventually(lambda: renewing.stats["connects"] == 2, 5, "reconnect after 4401")
    lost = [c for c in changes if c.state is ConnectionState.RECONNECTING]
    assert len(lost) == 1 and lost[0].close.code == 4401
    assert lost[0].delay == 0.0  # an expired token is not an outage: no backoff
    assert renewing.state is ConnectionState.OPEN


async def test_a_refresh_that_revokes_a_channel_ends_its_subscription_with_forbidden(
        jwt_server, client_factory):
    calls = 0

    async def get_token() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            return make_token("alice", ttl=2, channels=["room:1", "room:2"])
        return make_token("alice", channels=["room:1"])  # room:2 is no longer granted

    client = client_factory(jwt_server.url, token_provider=get_token)
    await client.connect()
    async with client.subscribe("room:1") as kept, client.subscribe("room:2") as revoked:
        with pytest.raises(RequestError) as info:
            async with asyncio.timeout(5):
                async for _ in revoked:
                    pass
        assert info.value.code == "forbidden"
        assert client.stats["connects"] == 1 and client.state is ConnectionState.OPEN
        await client.publish("room:1", "still here")
        async with asyncio.timeout(5):
            assert (await anext(aiter(kept))).data == "still here"


async def test_first_message_auth_resumes_its_session_where_anonymous_is_allowed(
        server_factory, proxy_factory, client_factory):
    """A server that welcomes anonymous connections at once must still wait for the
    token a client sends as its first message: else the reconnect is first welcomed as
    anonymous, and the user's session is refused as ``other_user``."""
    srv = server_factory(jwt_secret=SECRET, allow_anonymous=True,
                         anonymous_channels=["public:*"])
    proxy = await proxy_factory(srv.port)
    client = client_factory(proxy.url, token=make_token("alice"))
    await client.connect()
    first = client.welcome
    assert not first.resumed
    async with client.subscribe("room:1"):
        assert await client.publish("room:1", "while subscribed") >= 1
        assert proxy.reset_all() == 1
        await eventually(lambda: client.stats["connects"] == 2
                         and client.state is ConnectionState.OPEN, what="the reconnect")
    again = client.welcome
    assert again.resume_failed is None
    assert again.resumed and again.session == first.session
    assert [s.channel for s in again.subs] == ["room:1"]
