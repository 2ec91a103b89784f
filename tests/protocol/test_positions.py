"""Channel cursors: dedupe by position, recovery outcomes, resync after a new epoch."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from staywire.protocol.positions import ChannelCursor, CursorState, Position, Verdict


def live_cursor(epoch: str = "e1", offset: int = 0) -> ChannelCursor:
    cursor = ChannelCursor("room:1")
    assert cursor.subscribe() is None
    cursor.on_subscribed(epoch, offset, recovered=False)
    return cursor


def test_fresh_subscribe_takes_the_ack_position_without_reporting():
    cursor = ChannelCursor("room:1")
    assert cursor.subscribe() is None
    outcome = cursor.on_subscribed("e1", 41, recovered=False)
    assert outcome.live and not outcome.unrecovered
    assert cursor.position == Position("e1", 41)
    assert cursor.state is CursorState.LIVE


def test_in_order_messages_are_delivered_and_repeats_dropped():
    cursor = live_cursor(offset=41)
    assert cursor.on_message("e1", 42) is Verdict.DELIVER
    assert cursor.on_message("e1", 42) is Verdict.DUPLICATE
    assert cursor.on_message("e1", 41) is Verdict.DUPLICATE
    assert cursor.on_message("e1", 43) is Verdict.DELIVER
    assert cursor.position == Position("e1", 43)


def test_a_live_gap_is_not_delivered_but_resubscribed_from_the_delivered_position():
    cursor = live_cursor(offset=1)
    assert cursor.on_message("e1", 4) is Verdict.RESYNC
    assert cursor.position.offset == 1 and cursor.state is CursorState.RESYNCING
    assert cursor.on_message("e1", 5) is Verdict.STALE  # dropped until the resync's unsub ack
    cursor.on_unsubscribed()
    assert cursor.on_message("e1", 2) is Verdict.DELIVER  # the replay fills the gap in order
    assert cursor.on_message("e1", 3) is Verdict.DELIVER
    assert cursor.on_message("e1", 4) is Verdict.DELIVER
    outcome = cursor.on_subscribed("e1", 5, recovered=True)
    assert outcome.live and not outcome.unrecovered


def test_resubscribe_asks_since_the_delivered_position_and_dedupes_the_replay():
    cursor = live_cursor(offset=10)
    cursor.on_message("e1", 11)
    cursor.connection_lost()
    assert cursor.state is CursorState.IDLE
    assert cursor.on_message("e1", 12) is Verdict.STALE  # not subscribed on this connection
    assert cursor.subscribe() == Position("e1", 11)
    assert cursor.on_message("e1", 11) is Verdict.DUPLICATE
    assert cursor.on_message("e1", 12) is Verdict.DELIVER
    assert cursor.on_message("e1", 13) is Verdict.DELIVER
    outcome = cursor.on_subscribed("e1", 13, recovered=True)
    assert outcome.live and not outcome.unrecovered and outcome.missing == 0


def test_history_truncated_reports_unrecovered_once():
    cursor = live_cursor(offset=10)
    cursor.connection_lost()
    cursor.subscribe()
    assert cursor.on_message("e1", 50) is Verdict.GAP
    outcome = cursor.on_subscribed("e1", 50, recovered=False)
    assert outcome.unrecovered and not outcome.epoch_changed
    assert outcome.previous == Position("e1", 50)


def test_new_epoch_after_restart_reports_and_resyncs_from_the_start_of_the_new_stream():
    cursor = live_cursor(offset=57)
    cursor.connection_lost()
    assert cursor.subscribe() == Position("e1", 57)
    # a live publication of the new stream racing the ack: dropped, the resync replays it
    assert cursor.on_message("e2", 3) is Verdict.STALE
    outcome = cursor.on_subscribed("e2", 3, recovered=False)
    assert outcome.unrecovered and outcome.epoch_changed and not outcome.live
    assert outcome.previous == Position("e1", 57)
    assert outcome.resync_from == Position("e2", 0)
    assert cursor.state is CursorState.RESYNCING
    assert cursor.on_message("e2", 4) is Verdict.STALE  # old subscription, before the unsub ack
    cursor.on_unsubscribed()
    assert [cursor.on_message("e2", n) for n in (1, 2, 3, 4)] == [Verdict.DELIVER] * 4
    final = cursor.on_subscribed("e2", 4, recovered=True)
    assert final.live and not final.unrecovered  # reported once already
    assert cursor.on_message("e2", 5) is Verdict.DELIVER


def test_resync_gives_up_after_a_few_epoch_changes_in_a_row():
    cursor = live_cursor(offset=1)
    for n in range(3):
        cursor.connection_lost()
        cursor.subscribe()
        assert cursor.on_subscribed(f"x{n}", 5, recovered=False).resync_from is not None
        cursor.on_unsubscribed()
    outcome = cursor.on_subscribed("x-final", 5, recovered=False)
    assert outcome.live and outcome.resync_from is None
    assert cursor.position == Position("x-final", 5)


def test_live_epoch_change_is_delivered_as_new_epoch():
    cursor = live_cursor(offset=9)
    assert cursor.on_message("e2", 1) is Verdict.NEW_EPOCH
    assert cursor.position == Position("e2", 1)


def test_recovered_ack_beyond_what_arrived_reports_missing_offsets():
    cursor = live_cursor(offset=5)
    cursor.connection_lost()
    cursor.subscribe()
    outcome = cursor.on_subscribed("e1", 8, recovered=True)
    assert outcome.missing == 3


def test_already_subscribed_resync_keeps_the_position():
    cursor = live_cursor(offset=5)
    cursor.connection_lost()
    cursor.subscribe()
    assert cursor.begin_resync() == Position("e1", 5)
    assert cursor.on_message("e1", 6) is Verdict.STALE
    cursor.on_unsubscribed()
    assert cursor.on_message("e1", 6) is Verdict.DELIVER


def test_ack_when_not_subscribing_is_ignored():
    cursor = live_cursor(offset=5)
    assert not cursor.on_subscribed("e1", 9, recovered=True).live
    assert cursor.position == Position("e1", 5)


@given(
    start=st.integers(0, 50),
    arrivals=st.lists(st.integers(1, 80), max_size=200),
)
def test_delivered_offsets_are_strictly_increasing_whatever_arrives(start, arrivals):
    cursor = live_cursor(offset=start)
    delivered = [n for n in arrivals if cursor.on_message("e1", n).deliver]
    assert delivered == sorted(set(delivered))
    assert all(n > start for n in delivered)


def test_server_side_join_is_live_when_nothing_was_missed():
    fresh = ChannelCursor("user:1")
    assert fresh.joined("e1", 5) is None  # a first welcome: live from its position
    assert fresh.state is CursorState.LIVE and fresh.position == Position("e1", 5)
    assert fresh.on_message("e1", 6) is Verdict.DELIVER
    fresh.connection_lost()
    assert fresh.joined("e1", 6) is None  # back at the position delivered
    assert fresh.state is CursorState.LIVE


def test_server_side_join_ahead_resyncs_from_the_delivered_position():
    c = ChannelCursor("user:1")
    c.joined("e1", 2)
    c.connection_lost()
    assert c.joined("e1", 9) == Position("e1", 2)  # missed 3..9: unsub, then sub since 2
    assert c.state is CursorState.RESYNCING
    assert c.on_message("e1", 10) is Verdict.STALE  # live ones wait for the replay
    c.on_unsubscribed()
    assert c.state is CursorState.SUBSCRIBING
    assert c.on_message("e1", 3) is Verdict.DELIVER
    # Another epoch: the same path, where the ack reports the stream lost.
    c.connection_lost()
    assert c.joined("e2", 1) == Position("e1", 3)
