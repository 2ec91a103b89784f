"""Presence over real sockets with the Python client: members and counts per user, join
and leave events per user, the grace period across a reconnect, the bound, the refusals."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from staywire.client import Join, Leave
from staywire.exceptions import RequestError
from tests.client.helpers import SECRET, Collector, eventually, make_token

pytestmark = pytest.mark.asyncio

CONFIG = """
presence_grace = 1.5

[channels."room:*"]
presence = true
join_leave = true

[channels."small:*"]
presence = true
join_leave = true
presence_max_members = 2
"""


@pytest.fixture
def server(server_factory, tmp_path: Path):
    path = tmp_path / "staywire.toml"
    path.write_text(CONFIG)
    return server_factory(config=str(path), jwt_secret=SECRET)


def cid(client) -> str:
    return client.welcome.client


async def until(ask, want, timeout: float = 5.0) -> None:
    """Ask again (every 50 ms) until the answer is ``want``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = await ask()
        if got == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still {got!r}, wanted {want!r}")


def who(items: list[Join | Leave]) -> list[tuple[str, str]]:
    return [(type(i).__name__.lower(), i.user) for i in items]


async def test_members_counts_and_per_user_join_and_leave(server, client_factory) -> None:
    bob = client_factory(server.url, token=make_token("bob"))
    alice1 = client_factory(server.url, token=make_token("alice"))
    alice2 = client_factory(server.url, token=make_token("alice"))
    await asyncio.gather(bob.connect(), alice1.connect(), alice2.connect())
    async with bob.subscribe("room:1") as bob_sub:
        seen = Collector(bob_sub)
        await eventually(lambda: who(seen.presence) == [("join", "bob")], 5, "bob's own join")
        a1 = await alice1.subscribe("room:1").__aenter__()
        a2 = await alice2.subscribe("room:1").__aenter__()
        # Alice's second connection is no second join.
        await eventually(lambda: len(seen.presence) >= 2, 5, "alice's join")
        p = await bob_sub.presence()
        assert (p.clients, p.users, p.stats_only) == (3, 2, False)
        assert sorted((m.user, m.client) for m in p.members) == sorted(
            [("bob", cid(bob)), ("alice", cid(alice1)), ("alice", cid(alice2))])
        assert await a1.presence_stats() == (3, 2)
        await a1.close()  # an unsub: alice is still here on her other connection
        await until(lambda: bob_sub.presence_stats(), (2, 2))
        await alice2.close()  # her last connection: one leave, after the grace period
        started = time.monotonic()
        await eventually(lambda: len(seen.presence) >= 3, 10, "alice's leave")
        assert time.monotonic() - started >= 1.0
        await asyncio.sleep(0.3)
        assert who(seen.presence) == [("join", "bob"), ("join", "alice"), ("leave", "alice")]
        assert seen.presence[2].client == cid(alice2)
        assert await bob_sub.presence_stats() == (1, 1)
        assert a2.channel == "room:1"


async def test_a_reconnect_within_the_grace_period_does_not_flicker(server, proxy_factory,
                                                                    client_factory) -> None:
    proxy = await proxy_factory(server.port)
    bob = client_factory(server.url, token=make_token("bob"))
    alice = client_factory(proxy.url, token=make_token("alice"))
    await asyncio.gather(bob.connect(), alice.connect())
    async with bob.subscribe("room:blip") as bob_sub, alice.subscribe("room:blip"):
        seen = Collector(bob_sub)
        await eventually(lambda: len(seen.presence) == 2, 5, "two joins")
        first = cid(alice)
        assert proxy.reset_all() == 1  # a network blip: alice reconnects at once
        await eventually(lambda: alice.welcome is not None and cid(alice) != first, 5,
                         "a new connection")
        # Well past the grace period: no leave and no join of alice were sent.
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            members = (await bob_sub.presence()).members
            if [m.client for m in members if m.user == "alice"] == [cid(alice)]:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert who(seen.presence) == [("join", "bob"), ("join", "alice")]
        p = await bob_sub.presence()
        assert (p.clients, p.users) == (2, 2)


async def test_over_the_bound_presence_answers_counts_only(server, client_factory) -> None:
    clients = [client_factory(server.url, token=make_token(f"u{i}")) for i in range(3)]
    await asyncio.gather(*(c.connect() for c in clients))
    subs = [await c.subscribe("small:1").__aenter__() for c in clients]  # all three subscribe
    p = await subs[0].presence()
    assert (p.clients, p.users, p.members, p.stats_only) == (3, 3, [], True)
    assert await subs[2].presence_stats() == (3, 3)


async def test_refusals_have_codes_and_the_connection_stays(server, client_factory) -> None:
    client = client_factory(server.url, token=make_token("carol"))
    await client.connect()
    async with client.subscribe("plain") as plain:
        with pytest.raises(RequestError) as err:
            await plain.presence()
        assert err.value.code == "presence_disabled"
    async with client.subscribe("room:x") as room:
        assert (await room.presence()).users == 1
