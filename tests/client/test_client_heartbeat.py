"""ClientHeartbeat deadline with a fake clock."""

from __future__ import annotations

import pytest

from staywire.client.heartbeat import ClientHeartbeat


def test_pings_every_interval():
    hb = ClientHeartbeat(interval=30, timeout=10, now=100.0)
    assert not hb.ping_due(129.9)
    assert hb.ping_due(130.0)
    hb.ping_sent(130.0)
    assert hb.next_ping_at == 160.0


def test_dead_when_nothing_arrives_within_interval_plus_timeout():
    hb = ClientHeartbeat(interval=30, timeout=10, now=0.0)
    assert hb.deadline == 40.0
    assert not hb.expired(39.99)
    assert hb.expired(40.0)


def test_any_arrival_pushes_the_deadline():
    hb = ClientHeartbeat(interval=0.5, timeout=0.5, now=0.0)
    hb.received(0.8)
    assert not hb.expired(1.5)
    assert hb.expired(1.8)
    hb.received(0.1)  # a stale timestamp never moves the deadline back
    assert hb.deadline == pytest.approx(1.8)


def test_next_wakeup_is_the_earlier_of_ping_and_deadline():
    hb = ClientHeartbeat(interval=30, timeout=10, now=0.0)
    assert hb.next_wakeup() == 30.0
    hb.ping_sent(30.0)
    assert hb.next_wakeup() == 40.0  # nothing arrived: the deadline comes first
    hb.received(35.0)
    assert hb.next_wakeup() == 60.0


@pytest.mark.parametrize("interval,timeout", [(0, 1), (1, 0), (-1, 1)])
def test_rejects_non_positive_settings(interval, timeout):
    with pytest.raises(ValueError):
        ClientHeartbeat(interval=interval, timeout=timeout, now=0.0)
