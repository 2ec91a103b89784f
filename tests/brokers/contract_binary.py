"""The broker contract for binary publications (protocol v2): the bytes, their kind and
their chunk header are stored, recovered and delivered unchanged, in the same stream of
offsets as JSON publications. Mixed into ``BrokerContract``, so every broker runs it."""

from __future__ import annotations

import asyncio

from staywire.brokers.base import HistoryLimits, Position, Publication

__all__ = ["BinaryContract"]

# Bytes that a text path would mangle: NUL, invalid UTF-8, the pub/sub separators.
AWKWARD = b"\x00\xff\xfe:1:e:4/2:room\r\n" + bytes(range(256))
CHUNK = b'{"transfer":"t1","seq":0,"at":0,"size":3}'


def _kinds(pubs: list[Publication]) -> list[tuple[int, bytes, bool, bytes | None]]:
    return [(p.offset, p.data, p.binary, p.chunk) for p in pubs]


class BinaryContract:
    """Uses the ``node`` and ``make_node`` fixtures of ``BrokerContract``."""

    async def test_binary_data_is_stored_and_delivered_unchanged(self, node) -> None:
        b = node.broker
        channel = "bin:a/b=c"
        await b.subscribe(channel)
        first = await b.publish(channel, AWKWARD, binary=True)
        empty = await b.publish(channel, b"", binary=True)
        chunked = await b.publish(channel, b"\x01\x02\x03", binary=True, chunk=CHUNK)
        assert [first.offset, empty.offset, chunked.offset] == [1, 2, 3]
        want = [(1, AWKWARD, True, None), (2, b"", True, None), (3, b"\x01\x02\x03", True, CHUNK)]
        delivered = await node.received.wait_for(channel, 3)
        assert _kinds(delivered) == want
        assert {(p.channel, p.epoch) for p in delivered} == {(channel, first.epoch)}
        h = await b.history(channel, Position(first.epoch, 0))
        assert _kinds(h.publications) == want

    async def test_json_and_binary_share_one_stream_and_recover_in_order(self, node) -> None:
        b = node.broker
        await b.subscribe("mixed")
        kinds = [i % 2 == 1 for i in range(6)]  # JSON, bytes, JSON, ...
        results = [await b.publish("mixed", b"%d" % i, binary=True) if binary
                   else await b.publish("mixed", b'"%d"' % i) for i, binary in enumerate(kinds)]
        assert [r.offset for r in results] == [1, 2, 3, 4, 5, 6]
        epoch = results[0].epoch
        h = await b.history("mixed", Position(epoch, 2))  # a subscriber that had 1 and 2
        assert [(p.offset, p.binary) for p in h.publications] == [
            (o, kinds[o - 1]) for o in range(3, 7)]
        assert [p.data for p in h.publications] == [
            b"%d" % (o - 1) if kinds[o - 1] else b'"%d"' % (o - 1) for o in range(3, 7)]
        assert all(p.chunk is None for p in h.publications)
        delivered = await node.received.wait_for("mixed", 6)
        assert [(p.offset, p.binary) for p in delivered] == [(i + 1, k) for i, k in
                                                             enumerate(kinds)]
        newest = await b.history("mixed", Position(epoch, 7), limit=2, reverse=True)
        assert [(p.offset, p.binary) for p in newest.publications] == [(6, True), (5, False)]

    async def test_a_binary_key_is_deduplicated_like_a_json_one(self, node) -> None:
        b = node.broker
        await b.subscribe("c")
        first = await b.publish("c", b"\x00once", key="k-bin", binary=True, chunk=CHUNK)
        again = await b.publish("c", b"\x00twice", key="k-bin", binary=True, chunk=CHUNK)
        assert (again.epoch, again.offset, again.duplicate) == (first.epoch, first.offset, True)
        marker = await b.publish("c", b'"marker"')
        assert marker.offset == first.offset + 1
        delivered = await node.received.wait_for("c", 2)
        assert _kinds(delivered) == [(1, b"\x00once", True, CHUNK), (2, b'"marker"', False, None)]
        await asyncio.sleep(0.05)
        assert len(node.received.on("c")) == 2

    async def test_the_byte_bound_counts_binary_data(self, make_node) -> None:
        b = (await make_node(policy=lambda c: HistoryLimits(100, 300.0, max_bytes=20))).broker
        for i in range(1, 6):
            await b.publish("c", b"\x00%08d" % i, binary=True, chunk=CHUNK)  # 9 bytes each
        epoch = (await b.history("c", None)).position.epoch
        kept = (await b.history("c", Position(epoch, 0))).publications
        assert [(p.offset, p.binary, p.chunk) for p in kept] == [(4, True, CHUNK),
                                                                  (5, True, CHUNK)]
