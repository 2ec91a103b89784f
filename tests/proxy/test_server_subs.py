"""Server-side subscriptions: the connect answer's ``subscriptions``, over real sockets.

The server subscribes the connection before its welcome, the welcome names each
channel with its position (``server_subs``), publications follow as ``msg``s, and
after a reconnect the client recovers what it missed from its own position, as for
a gap (``unsub``, ``sub`` with ``since``). The Python client keeps them in
``client.server_subscriptions``.
"""

from __future__ import annotations

import json

import pytest

from staywire.channel_options import parse_channel_rules
from staywire.client import Client, Message
from staywire.server.app import Server
from tests.client.helpers import FAST, Collector, eventually
from tests.proxy.backend import Backend
from tests.support.ws import closed_with, connect, expect, request


def ws_url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


async def publish(server: Server, channel: str, data: object) -> int:
    return (await server.publisher.publish(channel, json.dumps(data).encode())).offset


async def test_welcome_names_them_and_their_msgs_follow(backend: Backend, staywire) -> None:
    backend.answer["connect"] = {"result": {"user": "42", "subscriptions": ["user:42", "news"]}}
    server = await staywire(connect_proxy_url=f"{backend.url}/connect",
                            subscribe_proxy_url=(f"{backend.url}/subscribe",))
    await publish(server, "news", "before")
    async with connect(ws_url(server)) as ws:
        welcome = await expect(ws, "welcome")
        subs = {s["channel"]: s for s in welcome["server_subs"]}
        assert set(subs) == {"user:42", "news"}
        assert subs["news"]["offset"] == 1 and subs["user:42"]["offset"] == 0
        await publish(server, "user:42", {"n": 1})
        msg = await expect(ws, "msg")
        assert (msg["channel"], msg["offset"], msg["data"]) == ("user:42", 1, {"n": 1})
        # Granted by the connect answer: a resubscribe from a position (recovery) needs
        # neither grants nor the subscribe proxy, which is asked for nothing.
        assert (await request(ws, {"type": "unsub", "id": 1, "channel": "news"}))["type"] == "ack"
        ack = await request(ws, {"type": "sub", "id": 2, "channel": "news",
                                 "since": {"epoch": subs["news"]["epoch"], "offset": 0}})
        assert ack["recovered"] is True and ack["offset"] == 1
    assert backend.seen["subscribe"] == []


async def test_a_full_channel_is_left_out_and_said(backend: Backend, staywire,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    backend.answer["connect"] = {"result": {"user": "42", "subscriptions": ["small:1", "ok"]}}
    server = await staywire(connect_proxy_url=f"{backend.url}/connect",
                            channels=parse_channel_rules({"small:*": {"max_subscribers": 1}},
                                                         "test"))
    async with connect(ws_url(server)) as first:
        assert len((await expect(first, "welcome"))["server_subs"]) == 2
        async with connect(ws_url(server)) as second:
            welcome = await expect(second, "welcome")
            assert [s["channel"] for s in welcome["server_subs"]] == ["ok"]
            err = await expect(second, "error")
            assert (err["code"], err["channel"]) == ("channel_full", "small:1")
            assert "id" not in err
        # The Python client says so, and has the others.
        async with Client(ws_url(server), **FAST) as client:
            assert set(client.server_subscriptions) == {"ok"}
            await eventually(lambda: "did not subscribe small:1: channel_full" in caplog.text,
                             what="the client's warning")


async def test_an_invalid_channel_name_is_a_malformed_answer(backend: Backend, staywire) -> None:
    backend.answer["connect"] = {"result": {"user": "42", "subscriptions": ["no spaces"]}}
    server = await staywire(connect_proxy_url=f"{backend.url}/connect")
    async with connect(ws_url(server)) as ws:
        assert (await closed_with(ws))[0] == 1013
    assert server.backend is not None
    assert server.backend.client.outcomes[("connect", "malformed")] == 1


async def test_python_client_delivers_and_recovers_after_a_reconnect(
        backend: Backend, staywire) -> None:
    backend.answer["connect"] = {"result": {"user": "42", "subscriptions": ["user:42"]}}
    server = await staywire(connect_proxy_url=f"{backend.url}/connect")
    client = Client(ws_url(server), **FAST)
    try:
        await client.connect()
        sub = client.server_subscriptions["user:42"]
        assert sub.server_side
        got = Collector(sub)
        await publish(server, "user:42", 1)
        await eventually(lambda: got.data() == [1], what="the first publication")
        # The server drops the connection and publishes before the client is back: the
        # new welcome's position is ahead of what the client delivered.
        [conn] = list(server.table.connections)
        conn.close(4000, "test: dropped")
        await publish(server, "user:42", 2)
        await publish(server, "user:42", 3)
        await eventually(lambda: client.stats["connects"] == 2, what="the reconnect")
        # Recovered at the welcome, not at the next publication's gap.
        await eventually(lambda: got.data() == [1, 2, 3], what="the missed ones")
        await publish(server, "user:42", 4)
        await eventually(lambda: got.data() == [1, 2, 3, 4], what="the missed ones, in order")
        assert got.offsets() == [1, 2, 3, 4] and got.recoveries == []
        assert client.server_subscriptions["user:42"] is sub  # the same one, across connections
        assert all(isinstance(m, Message) for m in got.items)
        await got.stop()
    finally:
        await client.close()


async def test_python_client_ends_one_the_server_no_longer_subscribes(
        backend: Backend, staywire) -> None:
    backend.answer["connect"] = {"result": {"user": "42", "subscriptions": ["a", "b"]}}
    server = await staywire(connect_proxy_url=f"{backend.url}/connect")
    client = Client(ws_url(server), **FAST)
    try:
        await client.connect()
        assert set(client.server_subscriptions) == {"a", "b"}
        gone = client.server_subscriptions["b"]
        backend.answer["connect"] = {"result": {"user": "42", "subscriptions": ["a"]}}
        [conn] = list(server.table.connections)
        conn.close(4000, "test: dropped")
        await eventually(lambda: client.stats["connects"] == 2, what="the reconnect")
        assert set(client.server_subscriptions) == {"a"}
        assert [item async for item in gone] == []  # ended, not failed
    finally:
        await client.close()


async def test_a_server_side_subscription_is_a_presence_member_with_its_data(
        backend: Backend, staywire) -> None:
    """Joined by the connect answer, the member shows the answer's small ``data`` as its
    ``info``; a later connection of the same user is no second join."""
    backend.answer["connect"] = {"result": {"user": "42", "subscriptions": ["room:42"],
                                            "data": {"name": "Ada"}}}
    server = await staywire(connect_proxy_url=f"{backend.url}/connect",
                            channels=parse_channel_rules(
                                {"room:*": {"presence": True, "join_leave": True}}, "test"))
    async with connect(ws_url(server)) as ws:
        welcome = await expect(ws, "welcome")
        join = await expect(ws, "join")  # its own: the subscription is live
        assert join == {"type": "join", "channel": "room:42",
                        "member": {"client": welcome["client"], "user": "42",
                                   "info": {"name": "Ada"}}}
        async with connect(ws_url(server)) as again:
            second = await expect(again, "welcome")
            reply = await request(again, {"type": "presence", "id": 1, "channel": "room:42"})
            assert (reply["data"]["clients"], reply["data"]["users"]) == (2, 1)
            assert {m["client"] for m in reply["data"]["members"]} == {welcome["client"],
                                                                       second["client"]}
            stats = await request(ws, {"type": "presence_stats", "id": 2, "channel": "room:42"})
            assert stats == {"type": "result", "id": 2, "data": {"clients": 2, "users": 1}}
        off = await request(ws, {"type": "presence", "id": 3, "channel": "news"})
        assert (off["type"], off["code"]) == ("error", "presence_disabled")
        away = await request(ws, {"type": "presence", "id": 5, "channel": "room:other"})
        assert (away["type"], away["code"]) == ("error", "not_subscribed")
        bad = await request(ws, {"type": "presence", "id": 4, "channel": "bad channel!"})
        assert (bad["type"], bad["code"]) == ("error", "bad_request")
