"""Outbox: bounds, ordering, ack and replay after a lost connection."""

from __future__ import annotations

import pytest

from staywire.exceptions import QueueFull
from staywire.protocol.outbox import Outbox, OutboxEntry


class ListStore:
    """An in-memory ``OutboxStore`` that records every call."""

    def __init__(self, entries: list[OutboxEntry] | None = None) -> None:
        self.rows = {e.key: e for e in entries or []}
        self.calls: list[tuple[str, str]] = []

    def load(self) -> list[OutboxEntry]:
        return sorted(self.rows.values(), key=lambda e: e.seq)

    def add(self, entry: OutboxEntry) -> None:
        self.calls.append(("add", entry.key))
        self.rows[entry.key] = entry

    def remove(self, key: str) -> None:
        self.calls.append(("remove", key))
        self.rows.pop(key, None)


def test_entries_keep_publish_order_and_get_increasing_seqs():
    box = Outbox()
    entries = [box.add("c", f"{i}".encode(), f"k{i}") for i in range(5)]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert [e.key for e in box.unsent()] == ["k0", "k1", "k2", "k3", "k4"]


def test_message_bound_raises_queue_full_and_keeps_nothing():
    box = Outbox(max_messages=2)
    box.add("c", b"1", "a")
    box.add("c", b"2", "b")
    with pytest.raises(QueueFull):
        box.add("c", b"3", "c")
    assert len(box) == 2 and "c" not in box


def test_byte_bound_counts_encoded_data():
    box = Outbox(max_bytes=10)
    box.add("c", b"12345", "a")
    box.add("c", b"12345", "b")
    with pytest.raises(QueueFull):
        box.add("c", b"1", "c")
    assert box.total_bytes == 10


def test_bound_counts_in_flight_entries_until_acked():
    box = Outbox(max_messages=1)
    entry = box.add("c", b"1", "a")
    box.assign(entry, 7)
    with pytest.raises(QueueFull):
        box.add("c", b"2", "b")
    assert box.ack(7) is entry
    box.add("c", b"2", "b")


def test_ack_removes_by_request_id_and_unknown_ids_are_ignored():
    box = Outbox()
    a, b = box.add("c", b"1", "a"), box.add("c", b"2", "b")
    box.assign(a, 1)
    box.assign(b, 2)
    assert box.ack(2) is b
    assert box.ack(2) is None
    assert box.ack(99) is None
    assert [e.key for e in box] == ["a"]


def test_connection_lost_makes_in_flight_entries_unsent_again_in_order():
    box = Outbox()
    entries = [box.add("c", b"x", f"k{i}") for i in range(4)]
    for request_id, entry in enumerate(entries[:3], start=10):
        box.assign(entry, request_id)
    box.ack(11)  # k1 landed
    assert box.unsent_bytes == 1  # only k3
    box.connection_lost()
    assert [e.key for e in box.unsent()] == ["k0", "k2", "k3"]
    assert box.unsent_bytes == 3
    assert box.by_request(10) is None  # old ids mean nothing on the next connection


def test_replay_keeps_keys_so_the_server_can_dedupe():
    box = Outbox()
    entry = box.add("c", b"x", "key-1")
    box.assign(entry, 1)
    box.connection_lost()
    (again,) = box.unsent()
    assert again.key == "key-1" and again.data == b"x"


def test_reject_and_discard_forget_entries_and_bytes():
    box = Outbox()
    a, b = box.add("c", b"11", "a"), box.add("c", b"22", "b")
    box.assign(a, 1)
    assert box.reject(1) is a
    assert box.discard("b") is b
    assert len(box) == 0 and box.total_bytes == 0 and box.unsent_bytes == 0


def test_duplicate_key_is_a_programming_error():
    box = Outbox()
    box.add("c", b"1", "a")
    with pytest.raises(ValueError):
        box.add("c", b"2", "a")


def test_store_sees_adds_and_removes_and_restores_in_seq_order():
    store = ListStore()
    box = Outbox(store=store)
    a = box.add("c", b"1", "a")
    box.add("c", b"2", "b")
    box.assign(a, 1)
    box.ack(1)
    assert store.calls == [("add", "a"), ("add", "b"), ("remove", "a")]

    reborn = Outbox(store=store)
    assert [e.key for e in reborn.unsent()] == ["b"]
    assert reborn.add("c", b"3", "c").seq == 3  # numbering continues after the restored seq


def test_restored_entries_are_held_even_above_the_bound():
    entries = [OutboxEntry(seq=i, key=f"k{i}", channel="c", data=b"x") for i in (3, 1, 2)]
    box = Outbox(max_messages=2, store=ListStore(entries))
    assert [e.key for e in box.unsent()] == ["k1", "k2", "k3"]
    with pytest.raises(QueueFull):
        box.add("c", b"y", "new")


def test_invalid_bounds_are_rejected():
    with pytest.raises(ValueError):
        Outbox(max_messages=0)
    with pytest.raises(ValueError):
        Outbox(max_bytes=0)
