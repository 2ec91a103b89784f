"""The contract every broker passes: one suite, run once per broker.

A broker's test module subclasses ``BrokerContract`` and provides a
``make_node`` fixture: an async factory ``(**options) -> Node`` that builds a
started broker (options are the broker's keyword arguments, e.g.
``history_size``) and closes it when the test ends. Node factories share their
state within a test, so two nodes of one test see the same streams.

Deliveries may be asynchronous (Redis), so every wait is bounded and "nothing
else was delivered" is checked after a marker publication that must arrive
after it: one channel's publications are delivered in order, and a node's
channels share one ordered link.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from staywire.brokers.base import Broker, HistoryLimits, Publication, Position
from tests.brokers.contract_binary import BinaryContract

__all__ = ["BrokerContract", "MakeNode", "Node", "Received", "eventually"]

WAIT = 3.0  # seconds: generous for a loaded machine, never reached when all is well


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait until ``predicate()`` holds, at most ``timeout`` seconds."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


@dataclass
class Received:
    """The ``on_publication`` callback: records what a node delivered."""

    publications: list[Publication] = field(default_factory=list)

    def __call__(self, publication: Publication) -> None:
        self.publications.append(publication)

    def on(self, channel: str) -> list[Publication]:
        return [p for p in self.publications if p.channel == channel]

    def offsets(self, channel: str) -> list[int]:
        return [p.offset for p in self.on(channel)]

    async def wait_for(self, channel: str, count: int, timeout: float = WAIT) -> list[Publication]:
        await eventually(lambda: len(self.on(channel)) >= count, timeout)
        return self.on(channel)


@dataclass
class Node:
    broker: Broker
    received: Received


MakeNode = Callable[..., Awaitable[Node]]


class BrokerContract(BinaryContract):
    """Subclasses provide the ``make_node`` fixture; binary cases in contract_binary.py."""

    @pytest.fixture
    async def node(self, make_node: MakeNode) -> Node:
        return await make_node()

    # -- offsets and epochs ------------------------------------------------------------

    async def test_offsets_start_at_one_and_grow_per_channel(self, node: Node) -> None:
        b = node.broker
        a_results = [await b.publish("a", b"%d" % i) for i in range(3)]
        b_results = [await b.publish("b", b"x") for _ in range(2)]
        assert [r.offset for r in a_results] == [1, 2, 3]
        assert [r.offset for r in b_results] == [1, 2]
        assert not any(r.duplicate for r in a_results + b_results)

    async def test_epoch_is_stable_within_a_broker_life(self, node: Node) -> None:
        b = node.broker
        before = await b.history("room:1", None)
        assert before.position.offset == 0
        results = [await b.publish("room:1", b"1") for _ in range(3)]
        after = await b.history("room:1", None)
        assert {r.epoch for r in results} == {before.position.epoch}
        assert after.position == Position(before.position.epoch, 3)

    # -- history ---------------------------------------------------------------------------

    async def test_history_is_bounded_by_size(self, make_node: MakeNode) -> None:
        b = (await make_node(history_size=3)).broker
        for i in range(1, 6):
            await b.publish("c", b'{"n":%d}' % i)
        h = await b.history("c", Position((await b.history("c", None)).position.epoch, 0))
        assert [p.offset for p in h.publications] == [3, 4, 5]
        assert [p.data for p in h.publications] == [b'{"n":3}', b'{"n":4}', b'{"n":5}']
        assert h.position.offset == 5

    async def test_history_limits_follow_the_channel_policy(self, make_node: MakeNode) -> None:
        limits = {"small": HistoryLimits(2, 300.0), "none": HistoryLimits(0, 300.0),
                  "bytes": HistoryLimits(100, 300.0, max_bytes=20)}
        b = (await make_node(policy=lambda c: limits.get(c, HistoryLimits(100, 300.0)))).broker

        async def kept(channel: str) -> list[int]:
            epoch = (await b.history(channel, None)).position.epoch
            return [p.offset for p in (await b.history(channel, Position(epoch, 0))).publications]

        for channel in ("small", "none", "bytes", "other"):
            for i in range(1, 6):
                await b.publish(channel, b'"%07d"' % i)  # 9 bytes each
        assert await kept("small") == [4, 5]
        assert await kept("none") == []
        assert await kept("bytes") == [4, 5]  # 18 bytes fit in 20, 27 would not
        assert await kept("other") == [1, 2, 3, 4, 5]
        assert (await b.history("bytes", None)).position.offset == 5

    async def test_a_publication_over_the_byte_bound_is_not_kept(self, make_node: MakeNode
                                                                 ) -> None:
        b = (await make_node(policy=lambda c: HistoryLimits(100, 300.0, max_bytes=5))).broker
        await b.publish("c", b'"ab"')
        await b.publish("c", b'"too long"')
        epoch = (await b.history("c", None)).position.epoch
        assert (await b.history("c", Position(epoch, 0))).publications == []
        assert (await b.history("c", None)).position.offset == 2

    async def test_history_after_since_is_exactly_what_was_missed(self, node: Node) -> None:
        b = node.broker
        results = [await b.publish("c", b'"m%d"' % i) for i in range(1, 7)]
        epoch = results[0].epoch
        h = await b.history("c", Position(epoch, 2))
        assert h.position == Position(epoch, 6)
        assert [(p.channel, p.epoch, p.offset, p.data) for p in h.publications] == [
            ("c", epoch, i, b'"m%d"' % i) for i in range(3, 7)
        ]
        assert (await b.history("c", Position(epoch, 6))).publications == []

    # One method run by every broker's subclass (differing executors) with a factory
    # fixture that builds a fresh broker per example: both health checks are moot.
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(size=st.integers(0, 4), count=st.integers(0, 9), since=st.integers(0, 11))
    async def test_history_is_the_last_size_publications_after_since(
        self, make_node: MakeNode, size: int, count: int, since: int
    ) -> None:
        b = (await make_node(history_size=size)).broker
        channel = f"h-{uuid.uuid4().hex}"  # a fresh stream per example
        epoch = (await b.history(channel, None)).position.epoch
        for i in range(1, count + 1):
            await b.publish(channel, b"%d" % i)
        h = await b.history(channel, Position(epoch, since))
        kept = range(max(1, count - size + 1), count + 1)
        assert [p.offset for p in h.publications] == [o for o in kept if o > since]
        assert [p.data for p in h.publications] == [b"%d" % p.offset for p in h.publications]
        assert h.position == Position(epoch, count)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(size=st.integers(0, 4), count=st.integers(0, 7), since=st.integers(0, 9),
           limit=st.none() | st.integers(0, 5), reverse=st.booleans())
    async def test_history_limit_and_reverse(
        self, make_node: MakeNode, size: int, count: int, since: int, limit: int | None,
        reverse: bool,
    ) -> None:
        b = (await make_node(history_size=size)).broker
        channel = f"h-{uuid.uuid4().hex}"
        epoch = (await b.history(channel, None)).position.epoch
        for i in range(1, count + 1):
            await b.publish(channel, b"%d" % i)
        h = await b.history(channel, Position(epoch, since), limit=limit, reverse=reverse)
        kept = range(max(1, count - size + 1), count + 1)
        want = [o for o in reversed(kept) if o < since] if reverse else [
            o for o in kept if o > since]
        assert [p.offset for p in h.publications] == want[:limit]
        assert [p.data for p in h.publications] == [b"%d" % p.offset for p in h.publications]
        assert h.position == Position(epoch, count)

    async def test_history_newest_first_from_above_the_top(self, node: Node) -> None:
        b = node.broker
        for i in range(1, 6):
            top = await b.publish("c", b"%d" % i)
        h = await b.history("c", Position(top.epoch, top.offset + 1), limit=2, reverse=True)
        assert [p.offset for p in h.publications] == [5, 4]
        older = await b.history("c", Position(top.epoch, 4), limit=10, reverse=True)
        assert [p.offset for p in older.publications] == [3, 2, 1]
        assert (await b.history("c", Position(top.epoch, 0), limit=0)).publications == []

    async def test_history_without_since_is_the_position_only(self, node: Node) -> None:
        r = await node.broker.publish("c", b"1")
        h = await node.broker.history("c", None)
        assert h.position == Position(r.epoch, 1)
        assert h.publications == []

    async def test_history_since_another_epoch_returns_nothing(self, node: Node) -> None:
        r = await node.broker.publish("c", b"1")
        await node.broker.publish("c", b"2")
        h = await node.broker.history("c", Position(r.epoch + "x", 0))
        assert h.position == Position(r.epoch, 2)
        assert h.publications == []

    async def test_history_expires_after_its_ttl_but_the_position_stays(
        self, make_node: MakeNode
    ) -> None:
        b = (await make_node(history_ttl=0.2)).broker
        r = await b.publish("c", b"1")
        await b.publish("c", b"2")
        await asyncio.sleep(0.4)
        h = await b.history("c", Position(r.epoch, 0))
        assert h.publications == []
        assert h.position == Position(r.epoch, 2)

    async def test_data_and_channel_names_pass_through_untouched(self, node: Node) -> None:
        channel = "a:b/c=d@e.f-_1"
        data = '{"t":"h\u00e9:\\n","x":[1,2]}\n:3:'.encode()
        await node.broker.subscribe(channel)
        r = await node.broker.publish(channel, data)
        (delivered,) = await node.received.wait_for(channel, 1)
        assert delivered == Publication(channel, r.epoch, 1, data)
        h = await node.broker.history(channel, Position(r.epoch, 0))
        assert h.publications == [delivered]

    # -- idempotency keys ----------------------------------------------------------------------

    async def test_duplicate_key_returns_the_first_result_and_publishes_nothing(
        self, node: Node
    ) -> None:
        b = node.broker
        await b.subscribe("c")
        first = await b.publish("c", b'"once"', key="k-1")
        again = await b.publish("c", b'"twice"', key="k-1")
        assert not first.duplicate
        assert (again.epoch, again.offset, again.duplicate) == (first.epoch, first.offset, True)
        marker = await b.publish("c", b'"marker"')
        assert marker.offset == first.offset + 1  # the duplicate took no offset
        delivered = await node.received.wait_for("c", 2)
        assert [p.data for p in delivered] == [b'"once"', b'"marker"']
        await asyncio.sleep(0.05)
        assert len(node.received.on("c")) == 2
        h = await b.history("c", Position(first.epoch, 0))
        assert [p.data for p in h.publications] == [b'"once"', b'"marker"']

    async def test_keys_are_per_channel(self, node: Node) -> None:
        a = await node.broker.publish("a", b"1", key="k")
        b = await node.broker.publish("b", b"1", key="k")
        assert not a.duplicate and not b.duplicate

    async def test_a_key_is_seen_on_its_channel_within_the_window(self, make_node: MakeNode
                                                                   ) -> None:
        b = (await make_node(dedupe_window=0.2)).broker
        assert not await b.key_seen("c", "xfer:t:0")
        await b.publish("c", b"1", key="xfer:t:0")
        assert await b.key_seen("c", "xfer:t:0")
        assert not await b.key_seen("other", "xfer:t:0")  # keys are per channel
        await asyncio.sleep(0.35)
        assert not await b.key_seen("c", "xfer:t:0")

    async def test_a_key_is_forgotten_after_the_dedupe_window(self, make_node: MakeNode) -> None:
        b = (await make_node(dedupe_window=0.2)).broker
        first = await b.publish("c", b"1", key="k")
        await asyncio.sleep(0.35)
        later = await b.publish("c", b"1", key="k")
        assert not later.duplicate
        assert later.offset == first.offset + 1

    # -- delivery ----------------------------------------------------------------------------------

    async def test_delivers_subscribed_channels_only_in_order(self, node: Node) -> None:
        b = node.broker
        await b.subscribe("yes")
        for i in range(1, 6):
            await b.publish("no", b"x")
            await b.publish("yes", b"%d" % i)
        delivered = await node.received.wait_for("yes", 5)
        assert [(p.offset, p.data) for p in delivered] == [(i, b"%d" % i) for i in range(1, 6)]
        assert node.received.on("no") == []

    async def test_publications_before_subscribe_are_not_delivered(self, node: Node) -> None:
        b = node.broker
        await b.publish("c", b"before")
        await b.subscribe("c")
        await b.publish("c", b"after")
        delivered = await node.received.wait_for("c", 1)
        await asyncio.sleep(0.05)
        assert [(p.offset, p.data) for p in node.received.on("c")] == [(2, b"after")]
        assert delivered[0].data == b"after"

    async def test_nothing_is_delivered_after_unsubscribe(self, node: Node) -> None:
        b = node.broker
        await b.subscribe("gone")
        await b.subscribe("marker")
        await b.publish("gone", b"1")
        await node.received.wait_for("gone", 1)
        await b.unsubscribe("gone")
        await b.publish("gone", b"2")
        await b.publish("marker", b"m")
        await node.received.wait_for("marker", 1)
        assert node.received.offsets("gone") == [1]

    async def test_subscribe_and_unsubscribe_are_idempotent(self, node: Node) -> None:
        b = node.broker
        await b.subscribe("c")
        await b.subscribe("c")
        await b.publish("c", b"1")
        await b.publish("c", b"2")
        await node.received.wait_for("c", 2)
        await asyncio.sleep(0.05)
        assert node.received.offsets("c") == [1, 2]
        await b.unsubscribe("c")
        await b.unsubscribe("c")
        await b.unsubscribe("never-subscribed")

    async def test_resubscribe_after_unsubscribe_delivers_again(self, node: Node) -> None:
        b = node.broker
        await b.subscribe("c")
        await b.unsubscribe("c")
        await b.publish("c", b"1")
        await b.subscribe("c")
        await b.publish("c", b"2")
        await node.received.wait_for("c", 1)
        await asyncio.sleep(0.05)
        assert node.received.offsets("c") == [2]

    # -- sessions ---------------------------------------------------------------------------------------

    async def test_sessions_save_load_replace_delete(self, node: Node) -> None:
        b = node.broker
        assert await b.load_session("s-unknown") is None
        await b.save_session("s1", b'{"user":"u1"}', 60)
        assert await b.load_session("s1") == b'{"user":"u1"}'
        await b.save_session("s1", b'{"user":"u1","subs":[]}', 60)
        assert await b.load_session("s1") == b'{"user":"u1","subs":[]}'
        await b.delete_session("s1")
        assert await b.load_session("s1") is None
        await b.delete_session("s1")  # deleting twice is fine

    async def test_sessions_expire(self, node: Node) -> None:
        await node.broker.save_session("s1", b"r", 0.15)
        assert await node.broker.load_session("s1") == b"r"
        await asyncio.sleep(0.3)
        assert await node.broker.load_session("s1") is None

    # -- availability ----------------------------------------------------------------------------------

    async def test_ping_and_available(self, node: Node) -> None:
        await node.broker.ping()
        assert node.broker.available

    async def test_close_is_idempotent(self, make_node: MakeNode) -> None:
        n = await make_node()
        await n.broker.close()
        await n.broker.close()
        assert not n.broker.available
