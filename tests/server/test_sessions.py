"""Session records: one Position type in them, and records of the earlier array form still read."""

from __future__ import annotations

from staywire.protocol.stream import Position
from staywire.server.sessions import decode_session, encode_session


def test_a_record_round_trips_with_positions() -> None:
    raw = encode_session("alice", {"room:1": Position("e1", 7)})
    record = decode_session(raw)
    assert record is not None
    assert record.user == "alice"
    assert record.subs == {"room:1": Position("e1", 7)}


def test_a_record_saved_as_arrays_before_the_position_type_still_resumes() -> None:
    record = decode_session(b'{"user":"bob","subs":{"c":["e2",3]}}')
    assert record is not None and record.subs == {"c": Position("e2", 3)}


def test_a_broken_record_is_no_session() -> None:
    assert decode_session(b'{"user":') is None
    assert decode_session(b'{"subs":{}}') is None
