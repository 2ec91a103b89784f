"""One connection for all tabs: three tabs, one server connection; the tab holding it closes
or crashes, another takes over within a second, and no tab loses or doubles a message."""

from __future__ import annotations

import threading
import time

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import (
    api_publish, connections, history, open_demo, received, texts, wait_for,
)

CHANNEL = "room:tabs"


def leader_of(pages) -> str:
    leaders = {p.evaluate("demo.client.status.leader") for p in pages}
    assert len(leaders) == 1, leaders
    return leaders.pop()


def publish_in_background(srv, prefix: str, count: int, interval: float) -> threading.Thread:
    def run() -> None:
        for i in range(count):
            api_publish(srv, CHANNEL, {"text": f"{prefix} {i}", "from": "api"})
            time.sleep(interval)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def assert_all_once_in_order(pages, expected: list[str]) -> None:
    for page in pages:
        wait_for(lambda p=page: len(received(p)) >= len(expected), 10,
                 f"{len(expected)} messages in every tab")
    time.sleep(0.2)  # anything doubled would have arrived by now
    for page in pages:
        got = received(page)
        assert [m["text"] for m in got] == expected
        offsets = [m["offset"] for m in got]
        assert offsets == sorted(set(offsets)), offsets
        assert texts(page) == expected


def takeover(pages, old_leader: str, since_ms: float) -> tuple[str, float, float]:
    """The new leader, how long until a tab held the lock, and until the tabs were OPEN."""
    def new_leader():
        entries = [e for p in pages for e in p.evaluate("demo.leaders")
                   if e["leader"] != old_leader and e["isLeader"]]
        return entries[0] if entries else None

    entry = wait_for(new_leader, 3, "a new leader")
    for page in pages:
        page.wait_for_function("s => document.getElementById('state').dataset.state === s",
                               arg="OPEN", timeout=5000)
    opened = max(
        min(s["at"] for s in p.evaluate("demo.states") if s["state"] == "OPEN"
            and s["at"] >= since_ms)
        for p in pages)
    return entry["leader"], entry["at"] - since_ms, opened - since_ms


def test_three_tabs_share_one_connection_and_survive_the_leader_closing_and_crashing(
        context, demo_server) -> None:
    pages = [open_demo(context, demo_server, f"channel={CHANNEL}") for _ in range(3)]
    for page in pages:
        page.wait_for_function("demo.sub !== null")
    first = leader_of(pages)
    assert sum(p.evaluate("demo.client.isLeader") for p in pages) == 1
    wait_for(lambda: connections(demo_server) == 1, 5, "one server connection")
    ids = [p.get_by_test_id("tab-id").inner_text() for p in pages]
    assert len(set(ids)) == 3
    for page in pages:
        assert page.get_by_test_id("leader").inner_text() == first

    # Every tab publishes; every tab sees every message once, in the same order.
    for i, page in enumerate(pages):
        page.evaluate("t => demo.send(t)", f"tab {i}")
    wait_for(lambda: all(len(received(p)) == 3 for p in pages), 5, "three messages per tab")
    expected = [m["text"] for m in received(pages[0])]
    assert sorted(expected) == ["tab 0", "tab 1", "tab 2"]

    # A tab that did not subscribe sees nothing of this room.
    other = open_demo(context, demo_server, "channel=room:elsewhere")
    other.wait_for_function("demo.sub !== null")
    assert connections(demo_server) == 1

    # The leader closes while the server publishes: a follower takes over.
    leader_page = next(p for p in pages if p.evaluate("demo.client.isLeader"))
    rest = [p for p in pages if p is not leader_page]
    publisher = publish_in_background(demo_server, "close", 40, 0.02)
    time.sleep(0.3)
    # The followers publish too, right as the leader goes: in flight through it, or queued.
    for i, page in enumerate(rest):
        page.evaluate("i => { for (let n = 0; n < 5; n += 1) demo.send(`tab ${i}.${n}`); }", i)
    closed_at = time.time() * 1000
    leader_page.close()
    second, lock_ms, open_ms = takeover(rest + [other], first, closed_at)
    publisher.join(timeout=10)
    ours = [f"tab {i}.{n}" for i in range(len(rest)) for n in range(5)]
    for page in rest:
        page.wait_for_function("document.getElementById('queued').textContent === '0'")
    total = len(expected) + 40 + len(ours)
    wait_for(lambda: len(received(rest[0])) >= total, 10, "every message after the takeover")
    shown = [m["text"] for m in received(rest[0])]
    assert sorted(shown[len(expected):]) == sorted([f"close {i}" for i in range(40)] + ours)
    for i in range(len(rest)):  # each tab's publishes land in the order it made them
        assert [t for t in shown if t.startswith(f"tab {i}.")] == [f"tab {i}.{n}" for n in range(5)]
    assert [t for t in shown if t.startswith("close ")] == [f"close {i}" for i in range(40)]
    expected = shown
    assert_all_once_in_order(rest, expected)
    epoch = received(rest[0])[0]["epoch"]
    msgs, _ = history(demo_server, CHANNEL, epoch, 0)
    assert [m["data"]["text"] for m in msgs] == expected  # the server has each exactly once
    assert lock_ms < 1000 and open_ms < 1500, (lock_ms, open_ms)
    wait_for(lambda: connections(demo_server) == 1, 5, "one server connection again")
    print(f"\nleader closed: lock taken after {lock_ms:.0f} ms, OPEN after {open_ms:.0f} ms")

    # The new leader crashes (renderer killed): the last tab takes over.
    crashing = next(p for p in rest + [other] if p.evaluate("demo.client.isLeader"))
    survivors = [p for p in rest + [other] if p is not crashing]
    publisher = publish_in_background(demo_server, "crash", 30, 0.02)
    time.sleep(0.2)
    crashed_at = time.time() * 1000
    with pytest.raises(PlaywrightError, match="crash"):
        crashing.goto("chrome://crash", timeout=3000)  # kills the renderer
    third, lock_ms2, open_ms2 = takeover(survivors, second, crashed_at)
    publisher.join(timeout=10)
    assert third not in (first, second)
    expected += [f"crash {i}" for i in range(30)]
    assert_all_once_in_order([p for p in survivors if p is not other], expected)
    assert received(other) == []  # it never subscribed to this room
    assert lock_ms2 < 1000 and open_ms2 < 1500, (lock_ms2, open_ms2)
    wait_for(lambda: connections(demo_server) == 1, 5, "one server connection at the end")
    print(f"leader crashed: lock taken after {lock_ms2:.0f} ms, OPEN after {open_ms2:.0f} ms")
    for page in survivors:
        assert page.errors == []


def test_sharing_off_or_unsupported_means_one_connection_per_tab(context, demo_server) -> None:
    # ?share=0 turns sharing off; a browser without Web Locks falls back by itself.
    a = open_demo(context, demo_server, "channel=room:solo&share=0")
    b = open_demo(context, demo_server, "channel=room:solo&share=0")
    old = context.new_page()
    old.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined });")
    old.goto(f"{demo_server.http}/?channel=room:solo")
    old.wait_for_function("document.getElementById('state').dataset.state === 'OPEN'")
    pages = [a, b, old]
    for page in pages:
        page.wait_for_function("demo.sub !== null")
        assert page.evaluate("demo.client.isLeader") is True
        assert page.get_by_test_id("sharing").inner_text() == "one per tab"
    assert old.evaluate("typeof navigator.locks") == "undefined"
    wait_for(lambda: connections(demo_server) == 3, 5, "three server connections")
    a.evaluate("demo.send('from a')")
    old.evaluate("demo.send('from old')")
    for page in pages:
        wait_for(lambda p=page: sorted(texts(p)) == ["from a", "from old"], 5, "both messages")
