"""Batched subscribes (``proxy_subscribe_batch``) against a real HTTP backend (uvicorn).

The subscribes that wait together go as one ``{"batch": [...]}`` request; each still
gets its own answer, its own failure, its own breaker verdict and its own deadline
(docs/proxy.md, *Batches*). The ready-made backends' side is in
tests/integrations (test_fastapi_batch.py, test_django.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from staywire.exceptions import ProxyUnavailable
from staywire.proxy.breaker import BreakerState
from staywire.proxy.client import ProxyClient
from staywire.proxy.schema import ChannelRequest, ChannelResponse, ChannelResult, Failure
from tests.proxy.backend import GARBAGE, SLOW, T, Backend, metric
from tests.support.ws import connect, expect, request

pytestmark = pytest.mark.asyncio


def body(channel: str, user: str = "42") -> ChannelRequest:
    return ChannelRequest(f"c-{channel}", "127.0.0.1", {"Cookie": f"s={user}"}, user, channel)


def per_item(decide: Any) -> Any:
    """A backend answer that decides each item of a batch with ``decide(item)``."""
    return lambda sent: {"batch": [decide(item) for item in sent["batch"]]}


def members_only(item: dict[str, Any]) -> dict[str, Any]:
    if item["channel"].startswith("room:ok"):
        return {"result": {}}
    return {"error": {"code": "forbidden", "reason": f"not in {item['channel']}"}}


async def outcomes(client: ProxyClient, url: str, channels: list[str]) -> list[Any]:
    """Every channel's subscribe at once: its answer's outcome, or its ProxyUnavailable."""
    calls = [client.call("subscribe", url, body(c), ChannelResponse) for c in channels]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    return [a if isinstance(a, BaseException) else (a.result or a.error) for a in answers]


async def test_concurrent_subscribes_go_together_each_with_its_own_answer(
        backend: Backend) -> None:
    backend.answer["subscribe"] = per_item(members_only)
    client = ProxyClient(timeout=2.0 * T, batch=8)
    channels = [f"room:ok{i}" if i % 3 else f"room:no{i}" for i in range(20)]
    try:
        got = await outcomes(client, f"{backend.url}/subscribe", channels)
    finally:
        await client.close()
    for channel, answer in zip(channels, got, strict=True):
        if channel.startswith("room:ok"):
            assert isinstance(answer, ChannelResult), (channel, answer)
        else:
            assert answer == Failure("forbidden", f"not in {channel}"), (channel, answer)
    sent = backend.seen["subscribe"]
    # 20 submitted in one turn of the loop: batches of at most 8, in the order submitted,
    # each item its own connection's body (cookie and all).
    assert [len(b["batch"]) for b in sent] == [8, 8, 4]
    items = [item for b in sent for item in b["batch"]]
    assert [i["channel"] for i in items] == channels
    assert items[0] == {"client": "c-room:no0", "ip": "127.0.0.1",
                        "headers": {"Cookie": "s=42"}, "user": "42", "channel": "room:no0"}
    assert client.outcomes[("subscribe", "ok")] == 20  # counted per item: refusals answer too
    assert client.batches() == {"subscribe": (3, 20)}


async def test_a_lone_subscribe_goes_at_once_as_a_batch_of_one(backend: Backend) -> None:
    backend.answer["subscribe"] = per_item(members_only)
    client = ProxyClient(timeout=2.0 * T, batch=64)
    try:
        for i in range(3):
            answer = await client.call("subscribe", f"{backend.url}/subscribe",
                                       body(f"room:ok{i}"), ChannelResponse)
            assert isinstance(answer.result, ChannelResult)
    finally:
        await client.close()
    assert [len(b["batch"]) for b in backend.seen["subscribe"]] == [1, 1, 1]
    assert len(backend.peers) == 1  # the pool's keep-alive, as without batches


async def test_items_wait_behind_the_calls_out_then_go_together(backend: Backend) -> None:
    """Two batches out (batch.MAX_CALLS) and slow: the subscribes that come meanwhile wait,
    then go as one batch as soon as one returns."""
    backend.answer["subscribe"] = SLOW
    backend.after_slow["subscribe"] = {"batch": [{"result": {}}]}
    client = ProxyClient(timeout=5.0 * T, batch=64)
    url = f"{backend.url}/subscribe"
    try:
        first = []
        for i in range(2):  # two batches of one, each out before the next is submitted
            first.append(asyncio.ensure_future(client.call("subscribe", url, body(f"room:{i}"),
                                                           ChannelResponse)))
            await backend.wait_seen("subscribe", i + 1)
        later = [asyncio.ensure_future(client.call("subscribe", url, body(f"room:w{i}"),
                                                   ChannelResponse)) for i in range(5)]
        await asyncio.sleep(0.05 * T)
        assert len(backend.seen["subscribe"]) == 2  # nothing more went out meanwhile
        backend.answer["subscribe"] = per_item(lambda _: {"result": {}})
        backend.release.set()  # the slow ones answer: the five go, together
        done = await asyncio.gather(*first, *later)
        assert all(isinstance(a.result, ChannelResult) for a in done)
    finally:
        await client.close()
    assert [len(b["batch"]) for b in backend.seen["subscribe"]] == [1, 1, 5]


@pytest.mark.parametrize(("answer", "detail"), [
    (GARBAGE, "not JSON"),
    ({"batch": [{"result": {}}]}, "short: 1 answer to 3"),
    ({"batch": [{"result": {}}] * 4}, "long: 4 answers to 3"),
    ({"result": {}}, "a single answer to a batch"),
    ({"batch": [{"result": {}}] * 3, "more": 1}, "an unknown field"),
])
async def test_a_malformed_batch_answer_fails_each_item_of_that_batch(
        backend: Backend, answer: Any, detail: str) -> None:
    backend.answer["subscribe"] = answer
    client = ProxyClient(timeout=2.0 * T, batch=3, breaker_failures=2)
    url = f"{backend.url}/subscribe"
    try:
        got = await outcomes(client, url, ["room:a", "room:b", "room:c"])
        assert all(isinstance(a, ProxyUnavailable) and str(a) == "malformed" for a in got), got
        assert client.outcomes[("subscribe", "malformed")] == 3
        # The backend answered: alive, if wrong; the circuit stays closed and the next
        # batch, answered right, goes through.
        assert client.state("subscribe") is BreakerState.CLOSED
        backend.answer["subscribe"] = per_item(members_only)
        assert isinstance((await outcomes(client, url, ["room:ok"]))[0], ChannelResult)
    finally:
        await client.close()


async def test_one_malformed_item_fails_only_its_own_request(backend: Backend) -> None:
    bad = {"room:b": {"result": {"dta": 1}}, "room:c": {"error": {"code": "no_such_code"}}}
    backend.answer["subscribe"] = per_item(lambda item: bad.get(item["channel"],
                                                                {"result": {}}))
    client = ProxyClient(timeout=2.0 * T, batch=8)
    try:
        got = await outcomes(client, f"{backend.url}/subscribe",
                             ["room:a", "room:b", "room:c", "room:d"])
    finally:
        await client.close()
    assert isinstance(got[0], ChannelResult) and isinstance(got[3], ChannelResult)
    assert [str(a) for a in got[1:3]] == ["malformed", "malformed"]
    assert len(backend.seen["subscribe"]) == 1


async def test_a_slow_batch_times_out_each_item_at_its_deadline(backend: Backend) -> None:
    backend.answer["subscribe"] = SLOW
    client = ProxyClient(timeout=0.3 * T, batch=8, breaker_failures=100)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        got = await outcomes(client, f"{backend.url}/subscribe", ["room:a", "room:b"])
        took = loop.time() - started
    finally:
        await client.close()
    assert [str(a) for a in got] == ["timeout", "timeout"]
    assert took < 0.3 * T + 0.5 * T  # the deadline, plus the sweep and a loaded machine
    assert client.outcomes[("subscribe", "timeout")] == 2


async def test_backend_down_each_item_counts_toward_the_breaker(backend: Backend) -> None:
    await backend.stop()
    client = ProxyClient(timeout=1.0 * T, batch=8, retries=1, breaker_failures=3,
                         breaker_reset=0.2 * T)
    url = f"{backend.url}/subscribe"
    try:
        got = await outcomes(client, url, ["room:a", "room:b", "room:c"])
        assert [str(a) for a in got] == ["unreachable"] * 3
        # One failed batch of three is three failures in a row, as three calls were.
        assert client.state("subscribe") is BreakerState.OPEN
        got = await outcomes(client, url, ["room:d", "room:e"])
        assert [str(a) for a in got] == ["circuit_open"] * 2
        await backend.start()
        backend.answer["subscribe"] = per_item(members_only)
        async with asyncio.timeout(5 * T):
            while True:  # after breaker_reset, one probe (a batch of one) closes it
                got = await outcomes(client, url, ["room:ok1", "room:ok2"])
                if isinstance(got[0], ChannelResult):
                    break
                await asyncio.sleep(0.05 * T)
        assert client.state("subscribe") is BreakerState.CLOSED
        assert isinstance((await outcomes(client, url, ["room:ok3"]))[0], ChannelResult)
    finally:
        await client.close()


async def test_a_retry_resends_the_whole_batch(backend: Backend) -> None:
    def flaky(sent: dict[str, Any]) -> Any:
        return 503 if len(backend.seen["subscribe"]) < 2 else per_item(members_only)(sent)

    backend.answer["subscribe"] = flaky
    client = ProxyClient(timeout=2.0 * T, batch=8, retries=2, random=lambda: 0.5)
    try:
        got = await outcomes(client, f"{backend.url}/subscribe", ["room:ok1", "room:no"])
    finally:
        await client.close()
    assert isinstance(got[0], ChannelResult) and isinstance(got[1], Failure)
    assert [[i["channel"] for i in b["batch"]] for b in backend.seen["subscribe"]] == [
        ["room:ok1", "room:no"]] * 2


async def test_a_cancelled_subscribe_leaves_its_batch_alone(backend: Backend) -> None:
    backend.answer["subscribe"] = SLOW
    backend.after_slow["subscribe"] = {"batch": [{"result": {}}, {"result": {}}]}
    client = ProxyClient(timeout=5.0 * T, batch=8)
    url = f"{backend.url}/subscribe"
    try:
        a = asyncio.ensure_future(client.call("subscribe", url, body("room:a"), ChannelResponse))
        b = asyncio.ensure_future(client.call("subscribe", url, body("room:b"), ChannelResponse))
        await backend.wait_seen("subscribe", 1)
        a.cancel()  # its connection went away
        backend.release.set()
        assert isinstance((await b).result, ChannelResult)
        with pytest.raises(asyncio.CancelledError):
            await a
        assert client.in_flight == 0
    finally:
        await client.close()


async def test_through_a_node_each_client_gets_its_own_reply(backend: Backend,
                                                             staywire: Any) -> None:
    backend.answer["connect"] = {"result": {"user": "42"}}
    backend.answer["subscribe"] = per_item(members_only)
    server = await staywire(connect_proxy_url=f"{backend.url}/connect",
                            subscribe_proxy_url=(f"room:* {backend.url}/subscribe",),
                            proxy_subscribe_batch=16)
    url = f"ws://127.0.0.1:{server.port}/ws"
    sockets = [await connect(url, additional_headers={"Cookie": f"s={i}"}) for i in range(6)]
    try:
        for ws in sockets:
            await expect(ws, "welcome")
        replies = await asyncio.gather(*(
            request(ws, {"type": "sub", "id": 1, "channel": f"room:{'ok' if i % 2 else 'no'}{i}"})
            for i, ws in enumerate(sockets)))
    finally:
        for ws in sockets:
            await ws.close()
    for i, reply in enumerate(replies):
        if i % 2:
            assert reply["type"] == "ack", reply
        else:
            assert reply == {"type": "error", "id": 1, "code": "forbidden",
                             "reason": f"not in room:no{i}"}
    items = [item for b in backend.seen["subscribe"] for item in b["batch"]]
    assert sorted(i["headers"]["Cookie"] for i in items) == [f"s={i}" for i in range(6)]
    api = f"http://127.0.0.1:{server.api_port}"
    assert await metric(api, "staywire_proxy_batched_total", 'event="subscribe"') == 6
    assert 1 <= await metric(api, "staywire_proxy_batches_total", 'event="subscribe"') <= 6


async def test_an_item_past_its_deadline_while_waiting_is_never_sent(backend: Backend) -> None:
    """Two batches out and slow; a third item whose own deadline passes while it waits
    fails with TimeoutError when its turn comes, and the backend never sees it."""
    from staywire.proxy.batch import MAX_CALLS, Coalescer

    backend.answer["subscribe"] = SLOW
    backend.after_slow["subscribe"] = {"batch": [{"result": {}}]}
    client = ProxyClient(timeout=5.0 * T)
    url = f"{backend.url}/subscribe"

    async def send(payload: bytes, deadline: float) -> bytes:
        return await client._attempts("subscribe", url, payload, deadline)

    coalescer = Coalescer(send, max_batch=8)
    loop = asyncio.get_running_loop()
    try:
        out = []
        for i in range(MAX_CALLS):
            out.append(coalescer.submit(b'{"channel":"room:%d"}' % i, loop.time() + 5 * T))
            await backend.wait_seen("subscribe", i + 1)
        late = coalescer.submit(b'{"channel":"room:late"}', loop.time() + 0.05 * T)
        await asyncio.sleep(0.1 * T)  # its deadline passes while both calls are out
        backend.release.set()
        for future in out:
            assert await future == b'{"result":{}}'
        with pytest.raises(TimeoutError):
            await late
    finally:
        await coalescer.close()
        await client.close()
    assert [b["batch"] for b in backend.seen["subscribe"]] == [
        [{"channel": f"room:{i}"}] for i in range(MAX_CALLS)]
