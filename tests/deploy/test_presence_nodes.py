"""Presence across two nodes on a real Redis: members and per-user events cross nodes, and
the members of a node killed with ``kill -9`` leave, with ``leave`` events, within
``presence_ttl + presence_ttl / 3`` (docs/configuration.md, *Presence*)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from staywire.client import Join, Leave
from tests.client.conftest import client_factory  # noqa: F401 - a fixture
from tests.client.helpers import SECRET, Collector, eventually, make_token
from tests.support.redis_server import RedisServer
from tests.support.servers import TIMEOUT_FACTOR

pytestmark = [pytest.mark.asyncio, pytest.mark.redis]

TTL = 2.0  # presence_ttl: the bound below is TTL + TTL / 3
CONFIG = """
presence_ttl = {ttl}
presence_grace = {grace}

[channels."room:*"]
presence = true
join_leave = true
"""


@pytest.fixture
def redis():
    with RedisServer() as server:
        yield server


def start_nodes(server_factory, redis, tmp_path: Path, ttl: float, grace: float) -> list:
    path = tmp_path / "staywire.toml"
    path.write_text(CONFIG.format(ttl=ttl, grace=grace))
    return [server_factory(config=str(path), jwt_secret=SECRET, broker=redis.url,
                           drain_window=0.2, shutdown_timeout=2) for _ in range(2)]


@pytest.fixture
def nodes(server_factory, redis, tmp_path: Path):
    return start_nodes(server_factory, redis, tmp_path, TTL, 0.5)


def who(items: list[Join | Leave]) -> list[tuple[str, str]]:
    return [(type(i).__name__.lower(), i.user) for i in items]


async def test_presence_spans_nodes_and_a_killed_node_leaves_within_the_bound(
        nodes, client_factory) -> None:  # noqa: F811
    a, b = nodes
    bob = client_factory(b.url, token=make_token("bob"))
    alice_a = client_factory(a.url, token=make_token("alice"))
    alice_b = client_factory(b.url, token=make_token("alice"))
    carol_a = client_factory(a.url, token=make_token("carol"))
    await asyncio.gather(bob.connect(), alice_a.connect(), alice_b.connect(), carol_a.connect())
    async with bob.subscribe("room:1") as bob_sub:
        seen = Collector(bob_sub)
        await eventually(lambda: who(seen.presence) == [("join", "bob")], 5, "bob's join")
        for client in (alice_a, carol_a, alice_b):  # alice on both nodes
            await client.subscribe("room:1").__aenter__()
        await eventually(lambda: len(seen.presence) == 3, 5, "joins from node A")
        assert sorted(who(seen.presence)) == [("join", "alice"), ("join", "bob"),
                                              ("join", "carol")]
        p = await bob_sub.presence()  # asked on node B: node A's members are there
        assert (p.clients, p.users) == (4, 3)
        assert {m.client for m in p.members} == {
            c.welcome.client for c in (bob, alice_a, alice_b, carol_a)}

        carol = carol_a.welcome.client
        a.kill()  # kill -9: no unsubscribe, no goodbye
        killed = time.monotonic()
        await eventually(lambda: len(seen.presence) >= 4, (TTL * 4 / 3 + 3) * TIMEOUT_FACTOR,
                         "carol's leave")
        took = time.monotonic() - killed
        # Within the documented bound (TTL + TTL / 3), with slack for a loaded machine.
        assert took <= (TTL * 4 / 3 + 1.5) * TIMEOUT_FACTOR, took
        await asyncio.sleep(0.5)
        # Carol had no other client: one leave. Alice is still on node B: none.
        assert who(seen.presence)[3:] == [("leave", "carol")]
        assert seen.presence[3].client == carol
        p = await bob_sub.presence()
        assert (p.clients, p.users) == (2, 2)
        assert {m.user for m in p.members} == {"bob", "alice"}
        print(f"\nkill -9: node A's members left {took:.2f} s later (bound {TTL * 4 / 3:.2f} s)")


async def test_a_node_stopped_gracefully_has_its_members_leave_after_the_grace_period(
        server_factory, redis, tmp_path, client_factory) -> None:  # noqa: F811
    """SIGTERM: the node back-dates its heartbeat, so the others sweep its members once
    presence_grace is over (clients that reconnected elsewhere meanwhile are absorbed),
    sooner than a silent node's presence_ttl."""
    ttl, grace = 4.0, 0.3
    a, b = start_nodes(server_factory, redis, tmp_path, ttl, grace)
    bob = client_factory(b.url, token=make_token("bob"))
    carol = client_factory(a.url, token=make_token("carol"))
    await asyncio.gather(bob.connect(), carol.connect())
    async with bob.subscribe("room:2") as bob_sub:
        seen = Collector(bob_sub)
        await carol.subscribe("room:2").__aenter__()
        await eventually(lambda: len(seen.presence) == 2, 5, "two joins")
        await asyncio.get_running_loop().run_in_executor(None, a.stop)  # SIGTERM, waits
        stopped = time.monotonic()
        await eventually(lambda: len(seen.presence) == 3, (ttl * 4 / 3 + 3) * TIMEOUT_FACTOR,
                         "carol's leave")
        took = time.monotonic() - stopped
        assert who(seen.presence)[2:] == [("leave", "carol")]
        # grace + one sweep interval at most; a node that vanished would take at least
        # ttl - ttl / 3 (its last beat, up to a sweep interval before it stopped).
        assert took < ttl - ttl / 3, took
        print(f"\nSIGTERM: the node's members left {took:.2f} s after it exited "
              f"(grace {grace} s + sweep {ttl / 3:.2f} s)")
        assert await bob_sub.presence_stats() == (1, 1)
