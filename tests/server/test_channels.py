"""Pub/sub, offsets, history and recovery, idempotency keys and sessions over real sockets."""

from __future__ import annotations

import json

import pytest

from tests.support.ws import connect, expect, request

pytestmark = pytest.mark.asyncio


async def welcome(ws) -> dict:
    return await expect(ws, "welcome")


async def test_publish_reaches_every_subscriber_in_order_with_offsets(anon_server) -> None:
    async with connect(anon_server.url) as a, connect(anon_server.url) as b:
        await welcome(a)
        await welcome(b)
        ack_a = await request(a, {"type": "sub", "id": 1, "channel": "room:1"})
        ack_b = await request(b, {"type": "sub", "id": 1, "channel": "room:1"})
        assert ack_a["offset"] == ack_b["offset"] == 0 and ack_a["recovered"] is False
        for i in range(5):
            ack = await request(a, {"type": "pub", "id": 10 + i, "channel": "room:1",
                                    "data": {"n": i}})
            assert ack["offset"] == i + 1 and ack["epoch"] == ack_a["epoch"]
        for ws in (a, b):
            got = [await expect(ws, "msg") for _ in range(5)]
            assert [m["offset"] for m in got] == [1, 2, 3, 4, 5]
            assert [m["data"]["n"] for m in got] == [0, 1, 2, 3, 4]
            assert all(m["channel"] == "room:1" for m in got)


async def test_unsubscribe_stops_delivery(anon_server) -> None:
    async with connect(anon_server.url) as a:
        await welcome(a)
        await request(a, {"type": "sub", "id": 1, "channel": "c"})
        assert (await request(a, {"type": "unsub", "id": 2, "channel": "c"})) == {"type": "ack",
                                                                                  "id": 2}
        assert (await request(a, {"type": "unsub", "id": 3, "channel": "c"}))["code"] == \
            "not_subscribed"
        await request(a, {"type": "pub", "id": 4, "channel": "c", "data": 1})
        await request(a, {"type": "sub", "id": 5, "channel": "other"})
        await request(a, {"type": "pub", "id": 6, "channel": "other", "data": 2})
        assert (await expect(a, "msg"))["channel"] == "other"
        assert (await request(a, {"type": "sub", "id": 7, "channel": "other"}))["code"] == \
            "already_subscribed"


async def test_resubscribe_with_since_recovers_exactly_what_was_missed(anon_server) -> None:
    async with connect(anon_server.url) as pub:
        await welcome(pub)
        async with connect(anon_server.url) as a:
            await welcome(a)
            await request(a, {"type": "sub", "id": 1, "channel": "r"})
            await request(pub, {"type": "pub", "id": 1, "channel": "r", "data": "one"})
            first = await expect(a, "msg")
        for i in range(3):  # published while `a` is away
            await request(pub, {"type": "pub", "id": 2 + i, "channel": "r", "data": f"m{i}"})
        async with connect(anon_server.url) as a:
            await welcome(a)
            await a.send(json.dumps({"type": "sub", "id": 1, "channel": "r", "since": {
                "epoch": first["epoch"], "offset": first["offset"]}}))
            missed = [await expect(a) for _ in range(4)]
            assert [m["type"] for m in missed] == ["msg", "msg", "msg", "ack"]
            assert [m["data"] for m in missed[:3]] == ["m0", "m1", "m2"]
            assert missed[3]["recovered"] is True and missed[3]["offset"] == 4
            # Live traffic continues after the recovery, without a gap.
            await request(pub, {"type": "pub", "id": 9, "channel": "r", "data": "live"})
            live = await expect(a, "msg")
            assert live["offset"] == 5 and live["data"] == "live"


async def test_gap_beyond_history_is_not_recovered(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], history_size=3)
    async with connect(srv.url) as ws:
        await welcome(ws)
        for i in range(6):
            await request(ws, {"type": "pub", "id": i + 1, "channel": "g", "data": i})
        epoch = (await request(ws, {"type": "pub", "id": 99, "channel": "g", "data": 6}))["epoch"]
        await ws.send(json.dumps({"type": "sub", "id": 100, "channel": "g",
                                  "since": {"epoch": epoch, "offset": 1}}))
        got = [await expect(ws) for _ in range(4)]
        assert [m.get("offset") for m in got[:3]] == [5, 6, 7]  # what history still holds
        assert got[3]["type"] == "ack" and got[3]["recovered"] is False


async def test_other_epoch_replays_nothing(anon_server) -> None:
    async with connect(anon_server.url) as ws:
        await welcome(ws)
        await request(ws, {"type": "pub", "id": 1, "channel": "e", "data": 1})
        ack = await request(ws, {"type": "sub", "id": 2, "channel": "e",
                                 "since": {"epoch": "gone", "offset": 0}})
        assert ack["recovered"] is False and ack["offset"] == 1


async def test_idempotency_key_publishes_once(anon_server) -> None:
    async with connect(anon_server.url) as a:
        await welcome(a)
        await request(a, {"type": "sub", "id": 1, "channel": "k"})
        first = await request(a, {"type": "pub", "id": 2, "channel": "k", "data": 1, "key": "x1"})
        again = await request(a, {"type": "pub", "id": 3, "channel": "k", "data": 1, "key": "x1"})
        assert again["offset"] == first["offset"] and again["duplicate"] is True
        other = await request(a, {"type": "pub", "id": 4, "channel": "k", "data": 2, "key": "x2"})
        assert other["offset"] == first["offset"] + 1
        msgs = [await expect(a, "msg") for _ in range(2)]
        assert [m["data"] for m in msgs] == [1, 2]


async def test_session_resumes_with_its_subscriptions(anon_server) -> None:
    async with connect(anon_server.url) as a:
        w = await welcome(a)
        assert w["resumed"] is False and w["subs"] == []
        await request(a, {"type": "sub", "id": 1, "channel": "s1"})
    async with connect(f"{anon_server.url}?session={w['session']}") as a:
        w2 = await welcome(a)
        assert w2["resumed"] is True and w2["session"] == w["session"]
        assert [s["channel"] for s in w2["subs"]] == ["s1"]
    async with connect(f"{anon_server.url}?session=ffff") as a:
        assert (await welcome(a))["resumed"] is False


async def test_data_over_max_data_size_is_refused(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], max_message_size=4096)
    async with connect(srv.url) as ws:
        await welcome(ws)
        big = {"type": "pub", "id": 1, "channel": "c", "data": "x" * 3000}
        assert (await request(ws, big))["type"] == "ack"
        huge = {"type": "pub", "id": 2, "channel": "c", "data": "x" * 4100}
        await ws.send(json.dumps(huge))
        from tests.support.ws import closed_with

        assert (await closed_with(ws))[0] == 1009
