"""The presence core with a hand-driven clock: per-user join and leave, the grace period,
the bound, anonymous clients, and the answers (server/presence.py over MemoryPresence)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from staywire.brokers.presence import MemoryPresence
from staywire.channel_options import parse_channel_rules
from staywire.config import Config
from staywire.protocol.codes import ErrorCode
from staywire.protocol.envelope import PresenceQuery, PresenceStatsQuery
from staywire.server.auth import Identity
from staywire.server.presence import UNSUB_WINDOW, Presence

RULES = parse_channel_rules({
    "room:*": {"presence": True, "join_leave": True, "presence_max_members": 3},
    "quiet:*": {"presence": True},
}, "test")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Conn:
    id: str
    user: str
    session: str = ""
    presence_info: bytes | None = None
    subs: dict[str, Any] = field(default_factory=dict)
    sent: list[bytes] = field(default_factory=list)
    errors: list[tuple[ErrorCode, int | None]] = field(default_factory=list)

    @property
    def identity(self) -> Identity:
        return Identity(user=self.user)

    def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None,
                   channel: str | None = None) -> None:
        self.errors.append((code, request_id))

    def enqueue(self, frame: bytes) -> None:
        self.sent.append(frame)


def payload(frame: bytes) -> bytes:
    """The payload of one unmasked server text frame (RFC 6455 5.2)."""
    return frame[2:] if frame[1] < 126 else frame[4:]


def make(grace: float = 5.0) -> tuple[Presence, Clock, list[dict[str, Any]]]:
    clock = Clock()
    events: list[dict[str, Any]] = []

    def deliver(channel: str, frame: bytes) -> None:
        events.append(json.loads(payload(frame)))

    store = MemoryPresence()
    presence = Presence(Config(channels=RULES, presence_grace=grace), store, deliver,
                        clock=clock)
    store._on_event = presence.on_event  # what Presence.start() does, without its timer
    return presence, clock, events


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["member"]["user"]) for e in events]


async def answer(presence: Presence, conn: Conn, channel: str, stats: bool = False
                 ) -> dict[str, Any]:
    conn.subs[channel] = object()
    query = PresenceStatsQuery(id=7, channel=channel) if stats else PresenceQuery(id=7,
                                                                                  channel=channel)
    await presence.answer(conn, query)
    reply = json.loads(payload(conn.sent.pop()))
    assert reply["type"] == "result" and reply["id"] == 7
    return reply["data"]


async def test_one_user_on_two_connections_is_one_join_and_one_leave() -> None:
    presence, clock, events = make()
    a1, a2, b = Conn("a1", "alice"), Conn("a2", "alice"), Conn("b1", "bob")
    presence.joined("room:1", a1)
    presence.joined("room:1", a2)
    presence.joined("room:1", b)
    assert kinds(events) == [("join", "alice"), ("join", "bob")]
    assert events[0] == {"type": "join", "channel": "room:1",
                         "member": {"client": "a1", "user": "alice"}}
    data = await answer(presence, b, "room:1")
    assert (data["clients"], data["users"]) == (3, 2)
    assert sorted(m["client"] for m in data["members"]) == ["a1", "a2", "b1"]
    presence.left("room:1", a1, gone=False)  # unsub: alice is still here on a2
    presence.tick(clock.now + UNSUB_WINDOW)
    assert len(events) == 2
    presence.left("room:1", a2, gone=False)
    presence.tick(clock.now + UNSUB_WINDOW - 0.01)
    assert len(events) == 2
    presence.tick(clock.now + UNSUB_WINDOW)  # an unsub leaves within UNSUB_WINDOW
    assert kinds(events)[2:] == [("leave", "alice")]
    assert await answer(presence, b, "room:1", stats=True) == {"clients": 1, "users": 1}


async def test_a_reconnect_within_the_grace_period_is_neither_leave_nor_join() -> None:
    presence, clock, events = make(grace=5.0)
    old = Conn("c-old", "alice")
    presence.joined("room:1", old)
    presence.left("room:1", old, gone=True)  # the connection dropped
    clock.now += 4.9
    presence.tick(clock.now)
    new = Conn("c-new", "alice")
    presence.joined("room:1", new)  # back within 5 s, on a new connection
    clock.now += 60
    presence.tick(clock.now)
    assert kinds(events) == [("join", "alice")]
    data = await answer(presence, new, "room:1")
    assert [m["client"] for m in data["members"]] == ["c-new"]  # the old one is gone
    assert presence.departing == 0


async def test_an_unsub_then_sub_of_the_same_client_is_neither_leave_nor_join() -> None:
    """A client's resync (gap repair, server-side subscription recovery) is unsub + sub."""
    presence, clock, events = make(grace=5.0)
    c, bob = Conn("c1", "alice"), Conn("b1", "bob")
    presence.joined("room:1", c)
    presence.joined("room:1", bob)
    presence.left("room:1", c, gone=False)
    clock.now += 0.2
    presence.joined("room:1", c)  # the sub right after
    presence.tick(clock.now + 60)
    assert kinds(events) == [("join", "alice"), ("join", "bob")]
    data = await answer(presence, bob, "room:1")
    assert sorted(m["client"] for m in data["members"]) == ["b1", "c1"]  # still a member
    presence.left("room:1", c, gone=True)  # and it can still leave later
    presence.tick(clock.now + 5.0)
    assert kinds(events)[2:] == [("leave", "alice")]


async def test_the_last_connection_gone_leaves_once_the_grace_period_is_over() -> None:
    presence, clock, events = make(grace=5.0)
    c = Conn("c1", "alice")
    presence.joined("room:1", c)
    presence.left("room:1", c, gone=True)
    presence.tick(clock.now + 4.99)
    assert kinds(events) == [("join", "alice")]  # still a member meanwhile
    data = await answer(presence, Conn("x", "bob"), "room:1")
    assert data["clients"] == 1
    presence.tick(clock.now + 5.0)
    assert kinds(events) == [("join", "alice"), ("leave", "alice")]
    presence.tick(clock.now + 100)
    assert len(events) == 2  # exactly one leave


async def test_no_grace_means_a_dropped_connection_leaves_at_once() -> None:
    presence, _, events = make(grace=0)
    c = Conn("c1", "alice")
    presence.joined("room:1", c)
    presence.left("room:1", c, gone=True)
    assert kinds(events) == [("join", "alice"), ("leave", "alice")]


async def test_over_presence_max_members_counts_only_and_no_events() -> None:
    presence, _, events = make(grace=0)  # leaves at once: the counts are the point here
    conns = [Conn(f"c{i}", f"user{i}") for i in range(5)]
    for c in conns:
        presence.joined("room:big", c)
    # The bound is 3: the 4th and 5th joins still count, but send nothing.
    assert kinds(events) == [("join", "user0"), ("join", "user1"), ("join", "user2")]
    data = await answer(presence, conns[0], "room:big")
    assert data == {"clients": 5, "users": 5, "members": [], "stats_only": True}
    presence.left("room:big", conns[4], gone=False)  # 5 -> 4: over the bound still
    presence.left("room:big", conns[3], gone=False)  # 4 -> 3: went through 4, not sent
    assert len(events) == 3
    presence.left("room:big", conns[2], gone=False)  # 3 -> 2: within the bound
    assert kinds(events)[3:] == [("leave", "user2")]
    data = await answer(presence, conns[0], "room:big")
    assert data["clients"] == 2 and "stats_only" not in data


async def test_anonymous_clients_are_told_apart_by_session_and_info_is_shown() -> None:
    presence, _, events = make()
    a = Conn("c1", "", session="s1", presence_info=b'{"name":"ann"}')
    b = Conn("c2", "", session="s2")
    presence.joined("room:1", a)
    presence.joined("room:1", b)
    assert [e["member"] for e in events] == [
        {"client": "c1", "user": "", "info": {"name": "ann"}}, {"client": "c2", "user": ""}]
    assert await answer(presence, a, "room:1", stats=True) == {"clients": 2, "users": 2}
    assert "s1" not in json.dumps(events)  # the session counts them, it is never shown


async def test_join_leave_off_means_no_events_and_no_presence_is_refused() -> None:
    presence, _, events = make()
    c = Conn("c1", "alice")
    presence.joined("quiet:1", c)
    presence.joined("plain", c)  # no presence here: not tracked at all
    assert events == []
    assert (await answer(presence, c, "quiet:1", stats=True))["clients"] == 1
    c.subs["plain"] = object()
    await presence.answer(c, PresenceQuery(id=3, channel="plain"))
    await presence.answer(c, PresenceQuery(id=4, channel="room:other"))  # not subscribed
    assert c.errors == [(ErrorCode.PRESENCE_DISABLED, 3), (ErrorCode.NOT_SUBSCRIBED, 4)]
