"""The protocol core with a fake clock: no sockets, no event loop."""

from __future__ import annotations

import pytest

from staywire.brokers.base import Publication, Position
from staywire.protocol.codes import CloseCode, ErrorCode, Reconnect, reconnect_policy
from staywire.protocol.jsgen import js_module
from staywire.protocol.envelope import Pub, Sub, decode, msg_envelope
from staywire.protocol.heartbeat import ServerHeartbeat, HeartbeatAction
from staywire.protocol.inbound import CloseConnection, InboundGuard, Limits, Reject
from staywire.protocol.ratelimit import Pacer, TokenBucket, ViolationCounter
from staywire.protocol.recovery import is_recovered, merge_live
from staywire.protocol.state import ConnectionStateMachine, ConnState, InvalidTransition

TEXT, BINARY, CONT = 1, 2, 0


# -- close codes -----------------------------------------------------------------------

@pytest.mark.parametrize("code,policy", [
    (1000, Reconnect.NEVER), (1001, Reconnect.BACKOFF), (1006, Reconnect.BACKOFF),
    (1011, Reconnect.BACKOFF), (1012, Reconnect.BACKOFF), (4000, Reconnect.BACKOFF),
    (4008, Reconnect.BACKOFF), (4029, Reconnect.BACKOFF), (4401, Reconnect.NEW_TOKEN),
    (4499, Reconnect.BACKOFF), (4500, Reconnect.NEVER), (4501, Reconnect.NEVER),
    (4999, Reconnect.NEVER), (3000, Reconnect.BACKOFF),
])
def test_close_code_ranges_carry_the_reconnect_policy(code: int, policy: Reconnect) -> None:
    assert reconnect_policy(code) is policy


def test_every_close_code_has_a_reason() -> None:
    assert all(c.reason for c in CloseCode)


def test_js_constants_are_generated_from_the_enums() -> None:
    js = js_module()
    for code in CloseCode:
        assert f'"{code.name}": {int(code)}' in js
    for err in ErrorCode:
        assert f'"{err.name}": "{err.value}"' in js


# -- envelope --------------------------------------------------------------------------

def test_decode_typed_requests() -> None:
    sub = decode(b'{"type":"sub","id":7,"channel":"room:1","since":{"epoch":"e1","offset":3}}')
    assert isinstance(sub, Sub) and sub.since is not None and sub.since.offset == 3
    pub = decode(b'{"type":"pub","id":1,"channel":"a","data":{"x":[1,2]},"key":"k"}')
    assert isinstance(pub, Pub) and bytes(pub.data) == b'{"x":[1,2]}'


@pytest.mark.parametrize("payload,code", [
    (b"[1,2]", ErrorCode.BAD_REQUEST),
    (b"not json", ErrorCode.BAD_REQUEST),
    (b'{"id":1}', ErrorCode.BAD_REQUEST),
    (b'{"type":"nope","id":1}', ErrorCode.UNKNOWN_TYPE),
    (b'{"type":5}', ErrorCode.BAD_REQUEST),
    (b'{"type":"sub","id":0,"channel":"a"}', ErrorCode.BAD_REQUEST),
    (b'{"type":"sub","id":9007199254740992,"channel":"a"}', ErrorCode.BAD_REQUEST),
    (b'{"type":"sub","id":"1","channel":"a"}', ErrorCode.BAD_REQUEST),
    (b'{"type":"sub","id":1,"channel":"has space"}', ErrorCode.BAD_REQUEST),
    (b'{"type":"sub","id":1,"channel":"' + b"x" * 129 + b'"}', ErrorCode.BAD_REQUEST),
    # Python's `$` also matches before a final newline; the name must end where the text does.
    (b'{"type":"sub","id":1,"channel":"room\\n"}', ErrorCode.BAD_REQUEST),
    (b'{"type":"pub","id":1,"channel":"room\\n","data":1}', ErrorCode.BAD_REQUEST),
    (b'{"type":"sub","id":1,"channel":"a","extra":1}', ErrorCode.BAD_REQUEST),
    (b'{"type":"pub","id":1,"channel":"a"}', ErrorCode.BAD_REQUEST),
    # msgspec raises RecursionError past its depth limit: once a 1011 close.
    (b'{"type":"pub","id":1,"channel":"a","data":' + b"[" * 5000 + b"]" * 5000 + b"}",
     ErrorCode.BAD_REQUEST),
    (b"[" * 5000, ErrorCode.BAD_REQUEST),
    # A bad tag is seen before the truncation (found by hypothesis): once an exception leak.
    (b'{"type":""', ErrorCode.BAD_REQUEST),
    (b'{"type":"nope","id":', ErrorCode.BAD_REQUEST),
])
def test_decode_rejects_what_the_contract_does_not_allow(payload: bytes, code: ErrorCode) -> None:
    from staywire.protocol.envelope import InvalidMessage

    with pytest.raises(InvalidMessage) as info:
        decode(payload)
    assert info.value.code is code


def test_invalid_request_keeps_its_id_for_the_error_reply() -> None:
    from staywire.protocol.envelope import InvalidMessage

    with pytest.raises(InvalidMessage) as info:
        decode(b'{"type":"sub","id":12,"channel":"bad channel"}')
    assert info.value.request_id == 12


def test_msg_envelope_is_valid_json_with_data_spliced() -> None:
    import json

    raw = msg_envelope("room:1", "ab12", 42, b'{"text":"hi \\"you\\""}')
    assert json.loads(raw) == {"type": "msg", "channel": "room:1", "epoch": "ab12",
                               "offset": 42, "data": {"text": 'hi "you"'}}


# -- inbound guard ---------------------------------------------------------------------

def guard(now: float = 0.0, **limits: object) -> InboundGuard:
    return InboundGuard(Limits(**limits), now)  # type: ignore[arg-type]


def test_fragmented_message_is_reassembled() -> None:
    g = guard()
    assert g.feed(TEXT, False, False, b'{"type":"pi', 0) is None
    assert g.feed(CONT, False, False, b'ng","t"', 0) is None
    req = g.feed(CONT, True, False, b":1}", 0)
    assert req is not None and type(req).__name__ == "Ping"


def test_message_over_max_size_closes_1009_even_when_fragmented() -> None:
    g = guard(max_message_size=200)
    with pytest.raises(CloseConnection) as info:
        g.feed(TEXT, True, False, b" " * 201, 0)
    assert info.value.code is CloseCode.MESSAGE_TOO_BIG
    g = guard(max_message_size=200)
    g.feed(TEXT, False, False, b" " * 150, 0)
    with pytest.raises(CloseConnection) as info:
        g.feed(CONT, False, False, b" " * 51, 0)
    assert info.value.code is CloseCode.MESSAGE_TOO_BIG


def test_invalid_utf8_closes_1007() -> None:
    with pytest.raises(CloseConnection) as info:
        guard().feed(TEXT, True, False, b'{"type":"ping","t":"\xff"}', 0)
    assert info.value.code is CloseCode.INVALID_TEXT


def test_rsv_bits_and_bad_continuations_close_1002() -> None:
    for args in [(TEXT, True, True, b"{}"), (CONT, True, False, b"x")]:
        with pytest.raises(CloseConnection) as info:
            guard().feed(*args, 0)  # type: ignore[arg-type]
        assert info.value.code is CloseCode.PROTOCOL_ERROR
    g = guard()
    g.feed(TEXT, False, False, b"{", 0)
    with pytest.raises(CloseConnection):
        g.feed(TEXT, True, False, b"{}", 0)


def test_binary_frames_get_an_error_reply() -> None:
    with pytest.raises(Reject) as info:
        guard().feed(BINARY, True, False, b"\x00\x01", 0)
    assert info.value.code is ErrorCode.BINARY_UNSUPPORTED


def test_invalid_messages_close_4500_after_max_invalid_within_the_window() -> None:
    g = guard(max_invalid=3, invalid_window=60.0)
    for t in (0.0, 1.0):
        with pytest.raises(Reject):
            g.feed(TEXT, True, False, b"nope", t)
    with pytest.raises(CloseConnection) as info:
        g.feed(TEXT, True, False, b"nope", 2.0)
    assert info.value.code is CloseCode.PROTOCOL_VIOLATION
    g = guard(max_invalid=3, invalid_window=60.0)
    for t in (0.0, 1.0, 61.0, 62.0):  # the window restarts: never three within 60 s
        with pytest.raises(Reject):
            g.feed(TEXT, True, False, b"nope", t)


def test_rate_limit_rejects_then_closes_4029_when_persistent() -> None:
    g = guard(rate_messages=10, rate_burst=5, rate_max_violations=3, rate_violation_window=10)
    ping = b'{"type":"ping"}'
    for _ in range(5):
        assert g.feed(TEXT, True, False, ping, 0.0) is not None
    for _ in range(2):
        with pytest.raises(Reject) as info:
            g.feed(TEXT, True, False, ping, 0.0)
        assert info.value.code is ErrorCode.RATE_LIMITED
    # The refusal names the request, so the client knows which one to send again.
    g2 = guard(rate_messages=10, rate_burst=1)
    g2.feed(TEXT, True, False, ping, 0.0)
    with pytest.raises(Reject) as info:
        g2.feed(TEXT, True, False, b'{"type":"pub","id":77,"channel":"c","data":1}', 0.0)
    assert info.value.request_id == 77
    with pytest.raises(CloseConnection) as close:
        g.feed(TEXT, True, False, ping, 0.0)
    assert close.value.code is CloseCode.RATE_LIMITED


def test_rate_limit_refills_with_time() -> None:
    g = guard(rate_messages=10, rate_burst=1)
    ping = b'{"type":"ping"}'
    g.feed(TEXT, True, False, ping, 0.0)
    with pytest.raises(Reject):
        g.feed(TEXT, True, False, ping, 0.05)
    assert g.feed(TEXT, True, False, ping, 0.2) is not None


def test_byte_rate_limit() -> None:
    g = guard(rate_bytes=1000, rate_bytes_burst=1000, max_message_size=1000)
    msg = b'{"type":"ping","t":' + b"1" * 900 + b"}"
    g.feed(TEXT, True, False, msg, 0.0)
    with pytest.raises(Reject):
        g.feed(TEXT, True, False, msg, 0.1)


# -- token bucket, violation counter ---------------------------------------------------

def test_token_bucket_with_fake_clock() -> None:
    b = TokenBucket(rate=2, burst=4, now=100.0)
    assert all(b.take(100.0) for _ in range(4))
    assert not b.take(100.0)
    assert b.take(100.5)  # one token back after 0.5 s at 2/s
    assert not b.take(100.5)
    assert b.take(110.0) and b.tokens == 3  # refills only up to burst
    assert not TokenBucket(1, 1, 5.0).take(4.0, cost=2)  # a clock going backwards adds nothing


def test_token_bucket_delay_says_when_without_taking() -> None:
    b = TokenBucket(rate=2, burst=4, now=0.0)
    assert b.delay(0.0, 4) == 0.0 and b.tokens == 4  # nothing taken
    assert b.take(0.0, 4)
    assert b.delay(0.0) == 0.5 and b.delay(0.25) == 0.25
    assert b.delay(0.5) == 0.0 and b.take(0.5)


def test_pacer_keeps_a_client_under_the_servers_buckets() -> None:
    """Whatever a client asks to send, what the pacer lets out never empties the server's
    own buckets (the same limits at full rate and burst)."""
    server_msgs = TokenBucket(10, 20, 0.0)
    server_bytes = TokenBucket(1000, 2000, 0.0)
    pacer = Pacer(messages=10, burst=20, bytes_rate=1000, bytes_burst=2000, now=0.0)
    # 2000: over the pacer's byte burst (half the server's), within the server's.
    now, sent, sizes = 0.0, 0, [50, 300, 2000, 10, 900] * 40
    for size in sizes:
        now += pacer.delay(now, size)  # wait for the turn, as the client does
        assert pacer.delay(now, size) == 0  # one wait is always enough
        pacer.charge(now, size)
        assert server_msgs.take(now) and server_bytes.take(now, size), (sent, now)
        sent += 1
    assert sent == len(sizes)
    # No slower than its share of the byte rate (the tighter of the two here).
    assert now <= sum(sizes) / (1000 * Pacer.RATE_SHARE) + 1
    assert pacer.delay(now, 10) > 0  # spent: the next one waits


def test_pacer_charges_what_else_was_sent_and_bounds_publishes_in_flight() -> None:
    pacer = Pacer(messages=10, burst=20, bytes_rate=1e6, bytes_burst=1e6, now=0.0)
    assert pacer.in_flight == 10  # half the burst awaits its ack at most
    for _ in range(12):
        pacer.charge(0.0, 30)  # subscribes: they never wait, and may overdraw
    assert abs(pacer.delay(0.0, 30) - 3 / 8) < 1e-9  # 3 tokens short at 8/s
    assert Pacer.announced(0, 20, 1, 1, 0.0) is None  # nonsense limits: no pacing
    assert Pacer.announced(10, 20, 1, 1, 0.0) is not None


def test_violation_counter_window() -> None:
    c = ViolationCounter(limit=2, window=10, now=0)
    assert not c.hit(1) and c.hit(2)
    c = ViolationCounter(limit=2, window=10, now=0)
    assert not c.hit(1) and not c.hit(12)


# -- heartbeat -------------------------------------------------------------------------

def test_heartbeat_pings_every_interval_and_declares_silence_dead() -> None:
    hb = ServerHeartbeat(interval=25, timeout=10, now=0)
    assert hb.poll(24.9) is HeartbeatAction.NONE
    assert hb.poll(25) is HeartbeatAction.PING
    assert hb.poll(30) is HeartbeatAction.NONE
    assert hb.poll(34.9) is HeartbeatAction.NONE
    assert hb.poll(35) is HeartbeatAction.DEAD


def test_heartbeat_any_traffic_answers_the_ping_and_pings_continue_on_schedule() -> None:
    hb = ServerHeartbeat(interval=25, timeout=10, now=0)
    assert hb.poll(25) is HeartbeatAction.PING
    hb.last_seen = 27
    assert hb.poll(40) is HeartbeatAction.NONE
    # A chatty peer is still pinged on schedule: proxies time out on server silence.
    hb.last_seen = 49
    assert hb.poll(50) is HeartbeatAction.PING


# -- recovery --------------------------------------------------------------------------

def pubs(*offsets: int, epoch: str = "e") -> list[Publication]:
    return [Publication("c", epoch, o, b"1") for o in offsets]


@pytest.mark.parametrize("since,top,replay,expected", [
    (None, Position("e", 5), [], False),
    (Position("e", 5), Position("e", 5), [], True),
    (Position("e", 3), Position("e", 5), pubs(4, 5), True),
    (Position("e", 2), Position("e", 5), pubs(4, 5), False),  # 3 left history
    (Position("old", 3), Position("e", 5), [], False),
    (Position("e", 9), Position("e", 5), [], False),
])
def test_recovery_rule(since: Position | None, top: Position,
                       replay: list[Publication], expected: bool) -> None:
    assert is_recovered(since, top, replay) is expected


def test_merge_live_drops_what_the_replay_delivered_and_other_epochs() -> None:
    buffered = pubs(4, 5, 6) + pubs(7, epoch="other")
    assert [p.offset for p in merge_live(5, "e", buffered)] == [6]


# -- state machine ---------------------------------------------------------------------

def test_state_machine_allows_only_protocol_transitions() -> None:
    sm = ConnectionStateMachine()
    seen = []
    for state in (ConnState.AUTHENTICATING, ConnState.OPEN):
        sm.advance(state)
        seen.append(sm.state)
    with pytest.raises(InvalidTransition, match="got AUTHENTICATING"):
        sm.advance(ConnState.AUTHENTICATING)
    for state in (ConnState.CLOSING, ConnState.CLOSED):
        sm.advance(state)
        seen.append(sm.state)
    assert seen == [ConnState.AUTHENTICATING, ConnState.OPEN, ConnState.CLOSING,
                    ConnState.CLOSED]
    with pytest.raises(InvalidTransition):
        sm.advance(ConnState.OPEN)
