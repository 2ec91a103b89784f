"""The sans-I/O transfer core (protocol/transfer.py): the server's table, the publisher's
chunker and the subscriber's receiver, with a fake clock and no socket."""

from __future__ import annotations

import hashlib
import random

import msgspec
import pytest

from staywire.protocol.binary import Chunk
from staywire.protocol.codes import ErrorCode
from staywire.protocol.transfer import (
    Chunker,
    OutChunk,
    Receiver,
    TransferCorrupt,
    TransferRefused,
    TransferTable,
    chunk_key,
)


def _chunks(payload: bytes, size: int, transfer: str = "t1") -> list[OutChunk]:
    chunker = Chunker(transfer, chunk_size=size, window=10_000)
    chunker.feed(payload)
    chunker.finish()
    out = []
    while (c := chunker.next_chunk()) is not None:
        chunker.sent(c.seq)
        out.append(c)
    return out


# -- the table -------------------------------------------------------------------------


def test_a_transfer_in_order_is_accepted_chunk_by_chunk() -> None:
    table = TransferTable(max_size=1000)
    chunks = _chunks(b"x" * 250, 100)
    steps = [table.step("ch", c.chunk, c.payload, 0.0) for c in chunks]
    assert [s.key for s in steps] == [chunk_key("t1", i) for i in range(3)]
    assert not any(s.again or s.lookup for s in steps)


def test_a_chunk_out_of_order_or_at_the_wrong_position_is_refused() -> None:
    table = TransferTable(max_size=1000)
    c0, c1, c2 = _chunks(b"y" * 250, 100)
    table.step("ch", c0.chunk, c0.payload, 0.0)
    with pytest.raises(TransferRefused) as exc:
        table.step("ch", c2.chunk, c2.payload, 0.0)
    assert exc.value.code is ErrorCode.TRANSFER_ORDER
    lying = Chunk(transfer="t1", seq=1, at=99)
    with pytest.raises(TransferRefused) as exc:
        table.step("ch", lying, c1.payload, 0.0)
    assert exc.value.code is ErrorCode.TRANSFER_ORDER
    assert not table.step("ch", c1.chunk, c1.payload, 0.0).again  # the right one still goes


def test_a_chunk_sent_again_takes_the_dedupe_path() -> None:
    table = TransferTable(max_size=1000)
    c0, c1, _ = _chunks(b"z" * 250, 100)
    table.step("ch", c0.chunk, c0.payload, 0.0)
    table.step("ch", c1.chunk, c1.payload, 0.0)
    again = table.step("ch", c0.chunk, c0.payload, 1.0)
    assert again.again and again.key == chunk_key("t1", 0)


def test_an_unknown_transfer_asks_for_the_previous_key_then_resumes() -> None:
    table = TransferTable(max_size=1000)
    _, c1, c2 = _chunks(b"r" * 250, 100)
    step = table.step("ch", c1.chunk, c1.payload, 0.0)
    assert step.lookup == chunk_key("t1", 0)
    assert len(table) == 0  # nothing kept until the broker said yes
    resumed = table.resume("ch", c1.chunk, c1.payload, 0.0)
    assert resumed.key == chunk_key("t1", 1) and resumed.lookup is None
    # The digest is not checked: this node did not see chunk 0. Wrong order still is.
    assert table.step("ch", c2.chunk, c2.payload, 0.0).key == chunk_key("t1", 2)


def test_over_max_transfer_size_is_refused() -> None:
    table = TransferTable(max_size=150)
    c0, c1, _ = _chunks(b"b" * 250, 100)
    table.step("ch", c0.chunk, c0.payload, 0.0)
    with pytest.raises(TransferRefused) as exc:
        table.step("ch", c1.chunk, c1.payload, 0.0)
    assert exc.value.code is ErrorCode.TRANSFER_TOO_LARGE
    with pytest.raises(TransferRefused) as exc:  # also a resumed one, by its position
        TransferTable(max_size=150).step("ch", c1.chunk, c1.payload, 0.0)
    assert exc.value.code is ErrorCode.TRANSFER_TOO_LARGE


def test_a_last_chunk_with_a_wrong_digest_is_corrupt_and_aborts() -> None:
    table = TransferTable(max_size=1000)
    c0, c1 = _chunks(b"h" * 150, 100)
    table.step("ch", c0.chunk, c0.payload, 0.0)
    with pytest.raises(TransferCorrupt) as exc:
        table.step("ch", c1.chunk, b"H" * 50, 0.0)
    assert exc.value.code is ErrorCode.TRANSFER_CORRUPT
    abort = exc.value.abort
    assert abort is not None and abort.abort == "transfer_corrupt" and abort.problem() is None
    with pytest.raises(TransferRefused) as later:  # nothing more of it is taken
        table.step("ch", c1.chunk, c1.payload, 0.0)
    assert later.value.code is ErrorCode.TRANSFER_UNKNOWN
    # A one-chunk transfer published nothing before: no abort to send.
    (only,) = _chunks(b"one", 100, "t2")
    with pytest.raises(TransferCorrupt) as exc:
        table.step("ch", only.chunk, b"two", 0.0)
    assert exc.value.abort is None


def test_an_idle_transfer_is_forgotten_and_its_late_chunks_are_unknown() -> None:
    table = TransferTable(max_size=1000, timeout=30.0)
    c0, c1, _ = _chunks(b"i" * 250, 100)
    table.step("ch", c0.chunk, c0.payload, 0.0)
    assert table.sweep(29.9) == 0 and len(table) == 1
    assert table.sweep(30.0) == 1 and len(table) == 0
    with pytest.raises(TransferRefused) as exc:
        table.step("ch", c1.chunk, c1.payload, 31.0)
    assert exc.value.code is ErrorCode.TRANSFER_UNKNOWN
    table.sweep(61.0)  # after as long again, the name is free
    assert table.step("ch", c1.chunk, c1.payload, 61.0).lookup is not None


def test_the_table_is_bounded_in_entries() -> None:
    table = TransferTable(max_size=1000, max_entries=3)
    for i in range(10):
        (c,) = _chunks(b"ab", 100, f"t{i}")[:1]
        first = Chunk(transfer=c.chunk.transfer, seq=0, at=0)
        table.step("ch", first, b"ab", float(i))
    assert len(table) == 3


def test_a_finished_transfer_takes_resends_but_no_more_chunks() -> None:
    table = TransferTable(max_size=1000)
    (only,) = _chunks(b"done", 100)
    table.step("ch", only.chunk, only.payload, 0.0)
    assert table.step("ch", only.chunk, only.payload, 0.0).again
    with pytest.raises(TransferRefused) as exc:
        table.step("ch", Chunk(transfer="t1", seq=1, at=4), b"more", 0.0)
    assert exc.value.code is ErrorCode.TRANSFER_ORDER


# -- the chunker -----------------------------------------------------------------------


def test_chunks_are_at_most_the_size_and_cover_the_payload_with_its_digest() -> None:
    payload = random.Random(1).randbytes(1000)
    chunks = _chunks(payload, 64)
    assert all(len(c.payload) <= 64 for c in chunks)
    assert b"".join(c.payload for c in chunks) == payload
    assert [c.chunk.at for c in chunks] == [64 * i for i in range(len(chunks))]
    assert chunks[-1].chunk.last and chunks[-1].chunk.sha256 == hashlib.sha256(payload).hexdigest()
    assert all(c.chunk.problem() is None for c in chunks)
    # Every header is the JSON the server's codec takes (no empty ``meta``).
    assert all(msgspec.json.decode(c.header, type=Chunk) == c.chunk for c in chunks)


def test_an_empty_payload_is_one_last_chunk() -> None:
    (only,) = _chunks(b"", 64)
    assert only.chunk.last and only.chunk.seq == 0 and only.payload == b""


def test_the_window_bounds_unacked_chunks_and_the_source_read_ahead() -> None:
    chunker = Chunker("t", chunk_size=10, window=3)
    while chunker.wants_data:
        chunker.feed(b"0123456789")
    assert not chunker.wants_data  # the source is not read further than the window
    sent = []
    while (c := chunker.next_chunk()) is not None:
        chunker.sent(c.seq)
        sent.append(c.seq)
    assert sent == [0, 1, 2]
    chunker.acked(1)  # out of order (a resend): only its own chunk is settled
    assert chunker.acked_bytes == 10
    chunker.acked(0)
    assert chunker.wants_data
    chunker.feed(b"0123456789")
    c = chunker.next_chunk()
    assert c is not None and c.seq == 3
    assert chunker.acked_bytes == 20


def test_a_source_that_lies_about_its_size_is_refused() -> None:
    chunker = Chunker("t", chunk_size=10, size=5)
    with pytest.raises(ValueError):
        chunker.feed(b"123456")
    short = Chunker("t", chunk_size=10, size=5)
    short.feed(b"123")
    with pytest.raises(ValueError):
        short.finish()


# -- the receiver ----------------------------------------------------------------------


def test_the_receiver_assembles_the_payload_and_reports_progress() -> None:
    payload = random.Random(2).randbytes(300)
    chunker = Chunker("t", chunk_size=100, size=300, meta=b'{"name":"a.bin"}')
    chunker.feed(payload)
    chunker.finish()
    receiver = Receiver()
    got = []
    while (c := chunker.next_chunk()) is not None:
        chunker.sent(c.seq)
        chunker.acked(c.seq)
        r = receiver.feed(c.chunk, c.payload, 0.0)
        assert r is not None and r.failure is None
        got.append(r)
    assert got[0].started and got[0].meta == b'{"name":"a.bin"}' and got[0].size == 300
    assert [r.done for r in got] == [100, 200, 300]
    assert got[-1].finished and b"".join(r.data for r in got) == payload
    assert len(receiver) == 0


def test_the_receiver_never_gives_corrupt_or_gapped_data() -> None:
    c0, c1, c2 = _chunks(b"k" * 250, 100)
    receiver = Receiver()
    receiver.feed(c0.chunk, c0.payload, 0.0)
    gap = receiver.feed(c2.chunk, c2.payload, 0.0)
    assert gap is not None and gap.failure is not None and gap.failure.code == "transfer_order"
    assert gap.data == b""
    receiver.feed(c0.chunk, c0.payload, 0.0)
    receiver.feed(c1.chunk, c1.payload, 0.0)
    bad = receiver.feed(c2.chunk, b"K" * 50, 0.0)
    assert bad is not None and bad.data == b"" and bad.failure is not None
    assert bad.failure.code == "transfer_corrupt" and not bad.finished


def test_the_receiver_ends_aborted_lost_and_idle_transfers() -> None:
    c0, c1, _ = _chunks(b"q" * 250, 100)
    receiver = Receiver(timeout=30.0)
    receiver.feed(c0.chunk, c0.payload, 0.0)
    aborted = receiver.feed(Chunk(transfer="t1", seq=1, at=100, abort="transfer_corrupt"), b"", 1)
    assert aborted is not None and aborted.failure is not None
    assert aborted.failure.code == "transfer_corrupt"
    receiver.feed(c0.chunk, c0.payload, 0.0)
    (lost,) = receiver.lost("history no longer holds offset 7")
    assert lost.failure is not None and lost.failure.code == "transfer_order"
    receiver.feed(c0.chunk, c0.payload, 0.0)
    assert receiver.expire(29.0) == []
    (idle,) = receiver.expire(30.0)
    assert idle.failure is not None and idle.failure.code == "transfer_timeout"
    # A transfer whose start this subscription did not see is not its business.
    assert receiver.feed(c1.chunk, c1.payload, 40.0) is None
