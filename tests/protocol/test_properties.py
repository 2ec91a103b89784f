"""Property tests: no input crashes the protocol core or breaks its invariants."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from staywire.protocol.envelope import Inbound, InvalidMessage, decode, msg_envelope
from staywire.protocol.heartbeat import ServerHeartbeat, HeartbeatAction
from staywire.protocol.inbound import CloseConnection, InboundGuard, Limits, Reject
from staywire.protocol.ratelimit import TokenBucket
from staywire.protocol.state import ConnectionStateMachine, ConnState, InvalidTransition

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {"type": st.sampled_from(["auth", "sub", "unsub", "pub", "rpc", "ping", "pong", "x", ""])},
    optional={"id": st.integers(min_value=-5, max_value=2**60) | st.text(max_size=3),
              "channel": st.text(max_size=140), "data": json_values,
              "token": st.text(max_size=10), "since": json_values, "key": st.text(max_size=5),
              "method": st.text(max_size=10), "t": json_values, "extra": json_values})


@given(st.binary(max_size=300))
def test_random_bytes_decode_or_fail_cleanly(payload: bytes) -> None:
    try:
        decode(payload)
    except InvalidMessage as exc:
        assert exc.reason and exc.code


@given(envelopes)
def test_random_envelopes_decode_to_valid_requests_or_fail_cleanly(obj: dict) -> None:
    try:
        req = decode(json.dumps(obj).encode())
    except InvalidMessage:
        return
    assert isinstance(req, Inbound)  # type: ignore[arg-type]
    rid = getattr(req, "id", None)
    assert rid is None or 1 <= rid <= 2**53 - 1


@given(st.from_regex(r"[A-Za-z0-9_\-:.@/=]{1,128}", fullmatch=True),
       st.text(alphabet="0123456789abcdef", min_size=1, max_size=16),
       st.integers(min_value=1, max_value=2**53), json_values)
def test_msg_envelope_round_trips(channel: str, epoch: str, offset: int, data: object) -> None:
    raw = json.dumps(data).encode()
    assert json.loads(msg_envelope(channel, epoch, offset, raw)) == {
        "type": "msg", "channel": channel, "epoch": epoch, "offset": offset, "data": data}


frames = st.tuples(st.sampled_from([0, 1, 2, 3, 8]), st.booleans(), st.booleans(),
                   st.binary(max_size=80) | st.sampled_from([b'{"type":"ping"}', b'{"type":"pi',
                                                              b'ng"}', b"\xff"]),
                   st.floats(min_value=0, max_value=0.5))


@settings(max_examples=300)
@given(st.lists(frames, max_size=40))
def test_guard_never_crashes_and_bounds_buffering(seq: list) -> None:
    limits = Limits(max_message_size=256, max_invalid=5, rate_messages=50, rate_burst=10)
    guard = InboundGuard(limits, 0.0)
    now = 0.0
    for opcode, fin, rsv, payload, dt in seq:
        now += dt
        try:
            guard.feed(opcode, fin, rsv, payload, now)
        except (Reject, CloseConnection):
            pass
        assert guard.assembler.buffered <= limits.max_message_size


@given(st.lists(st.sampled_from(list(ConnState)), max_size=20))
def test_state_machine_only_moves_forward(targets: list[ConnState]) -> None:
    sm = ConnectionStateMachine()
    for target in targets:
        before = sm.state
        try:
            sm.advance(target)
        except InvalidTransition:
            assert sm.state == before
            continue
        assert sm.state > before  # never backwards, never stays
    if sm.state == ConnState.CLOSED:
        for state in ConnState:  # terminal
            with pytest.raises(InvalidTransition):
                sm.advance(state)


@given(st.floats(0.1, 100), st.floats(1, 100),
       st.lists(st.floats(0, 5, allow_nan=False), max_size=50))
def test_token_bucket_never_exceeds_burst_or_goes_negative(rate: float, burst: float,
                                                           steps: list[float]) -> None:
    bucket = TokenBucket(rate, burst, 0.0)
    now = 0.0
    for dt in steps:
        now += dt
        bucket.take(now)
        assert 0 <= bucket.tokens <= burst


@given(st.lists(st.tuples(st.floats(0, 3), st.booleans()), max_size=60))
def test_heartbeat_declares_death_only_after_silence_past_the_timeout(events: list) -> None:
    hb = ServerHeartbeat(interval=2.0, timeout=1.0, now=0.0)
    now = 0.0
    for dt, traffic in events:
        now += dt
        if traffic:
            hb.last_seen = now
        if hb.poll(now) is HeartbeatAction.DEAD:
            assert now - hb.last_seen >= 1.0
            assert now - hb.ping_sent_at >= 1.0
            return
