"""The server API's presence and presence_stats, on one node and on two nodes on Redis.

A backend asks who is in a channel without subscribing to it: the members with their
user and client, the counts, the channel's members bound, and presence_disabled on a
channel without presence. On Redis either node answers for the members of both.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from staywire.api import ApiClient, ApiError, Batch
from tests.api.conftest import API_KEY, NODE
from tests.client.helpers import eventually, make_token

ROOMS = ["room:*"]


def _config(tmp_path: Path, bound: int = 1000) -> str:
    path = tmp_path / "staywire.toml"
    path.write_text(f'[channels."room:*"]\npresence = true\npresence_max_members = {bound}\n')
    return str(path)


async def test_members_counts_the_bound_and_disabled(server_factory, client_factory,
                                                     tmp_path: Path) -> None:
    srv = server_factory(config=_config(tmp_path, bound=2), **NODE)
    users = ["ann", "ann", "bob"]  # ann on two connections: one user, two clients
    clients = [client_factory(srv.url, token=make_token(u, channels=ROOMS)) for u in users]
    await asyncio.gather(*(c.connect() for c in clients))
    subs = [c.subscribe("room:1") for c in clients[:2]]
    for sub in subs:
        await sub.__aenter__()
    try:
        with ApiClient(srv.api, API_KEY) as api:
            await eventually(lambda: api.presence_stats("room:1").clients == 2,
                             what="two clients present")
            reply = await asyncio.to_thread(api.presence, "room:1")
            assert (reply.clients, reply.users, reply.stats_only) == (2, 1, False)
            assert sorted(m.client for m in reply.members) == sorted(
                c.welcome.client for c in clients[:2])
            assert {m.user for m in reply.members} == {"ann"}
            # Over the limit asked (or the channel's bound): the counts only.
            small = await asyncio.to_thread(api.presence, "room:1", limit=1)
            assert (small.clients, small.members, small.stats_only) == (2, [], True)
            batch = await asyncio.to_thread(
                api.batch, Batch().presence_stats("room:1").presence_stats("lobby"))
            assert (batch[0].clients, batch[0].users) == (2, 1)
            assert isinstance(batch[1], ApiError) and batch[1].code == "presence_disabled"
            async with clients[2].subscribe("room:1"):
                await eventually(lambda: api.presence_stats("room:1").users == 2,
                                 what="bob present")
                over = await asyncio.to_thread(api.presence, "room:1", limit=10)
                assert (over.clients, over.stats_only) == (3, True)  # the bound is 2
            empty = await asyncio.to_thread(api.presence, "room:nobody")
            assert (empty.clients, empty.users, empty.members) == (0, 0, [])
            for call in (lambda: api.presence("lobby"), lambda: api.presence_stats("lobby")):
                with pytest.raises(ApiError) as refused:
                    await asyncio.to_thread(call)
                assert (refused.value.status, refused.value.code) == (400, "presence_disabled")
            with pytest.raises(ApiError) as bad:
                await asyncio.to_thread(api.call, _raw("presence", {"channel": "room:1",
                                                                    "limit": 0}))
            assert bad.value.code == "bad_request"
    finally:
        for sub in subs:
            await sub.__aexit__(None, None, None)


def _raw(method: str, params: dict[str, object]):  # type: ignore[no-untyped-def]
    from staywire.api import schema as s
    from staywire.api.calls import Call

    return Call(method, params, s.PresenceReply)


@pytest.mark.redis
async def test_either_node_answers_for_the_members_of_both(server_factory, client_factory,
                                                           redis, tmp_path: Path) -> None:
    config = _config(tmp_path)
    a, b = (server_factory(config=config, **NODE, broker=redis.url) for _ in range(2))
    ann = client_factory(a.url, token=make_token("ann", channels=ROOMS))
    bob = client_factory(b.url, token=make_token("bob", channels=ROOMS))
    await asyncio.gather(ann.connect(), bob.connect())
    async with ann.subscribe("room:x"), bob.subscribe("room:x"):
        for node in (a, b):
            with ApiClient(node.api, API_KEY) as api:
                await eventually(lambda api=api: api.presence_stats("room:x").users == 2,
                                 what="both nodes' members")
                reply = await asyncio.to_thread(api.presence, "room:x")
                assert {m.user for m in reply.members} == {"ann", "bob"}
