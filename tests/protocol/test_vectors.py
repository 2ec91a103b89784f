"""The shared vectors in tests/vectors/*.json, run against the Python twins.

js/test/vectors.test.mjs runs the same files against the browser client's ports, so a
change to one side that the other lacks fails in one of the two suites.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from staywire.client import messages as m
from staywire.client.reconnect import ReconnectSchedule
from staywire.client.state import CloseInfo
from staywire.exceptions import ConnectionClosed, QueueFull
from staywire.protocol.backoff import Backoff
from staywire.protocol.outbox import Outbox
from staywire.protocol.positions import ChannelCursor, Position
from staywire.protocol.ratelimit import Pacer

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def cases(name: str) -> list[Any]:
    data = json.loads((VECTORS / f"{name}.json").read_text())
    return [pytest.param(c, id=c["name"]) for c in data["cases"]]


def randoms(values: list[float] | None) -> Callable[[], float]:
    it: Iterator[float] = iter(values or [])

    def random() -> float:
        value = next(it, None)
        assert value is not None, "the vector gives too few random values"
        return value

    return random


def backoff(policy: dict[str, Any], random: Callable[[], float]) -> Backoff:
    return Backoff(
        base=policy["base"], factor=policy["factor"], cap=policy["cap"],
        max_retries=policy["max_retries"], jitter=policy.get("jitter", False), random=random,
    )


def pos(p: Position | None) -> list[Any] | None:
    return None if p is None else [p.epoch, p.offset]


@pytest.mark.parametrize("case", cases("backoff"))
def test_backoff(case: dict[str, Any]) -> None:
    if case.get("invalid"):
        with pytest.raises(ValueError):
            backoff(case["policy"], randoms(None))
        return
    policy = backoff(case["policy"], randoms(case.get("random")))
    for attempt, delay in case["expect"]:
        got = policy(attempt)
        if delay is None:
            assert got is None, f"attempt {attempt}"
        else:
            assert got == pytest.approx(delay, rel=1e-9), f"attempt {attempt}"


@pytest.mark.parametrize("case", cases("reconnect"))
def test_reconnect_decision(case: dict[str, Any]) -> None:
    random = randoms(case.get("random"))
    schedule = ReconnectSchedule(
        backoff(case["policy"], random), can_refresh=case["can_refresh"], random=random
    )
    for i, step in enumerate(case["steps"]):
        if step.get("opened"):
            schedule.opened()
        elif "drain" in step:
            got = schedule.drain(step["drain"], step["now"])
            assert got == pytest.approx(step["expect"], rel=1e-9), f"step {i}"
        else:
            got = schedule.after(CloseInfo(step["close"], "why"), step["now"])
            expect = step["expect"]
            if isinstance(expect, dict):
                assert isinstance(got, ConnectionClosed), f"step {i}: {got!r}"
                assert type(got).__name__ == expect["error"], f"step {i}"
                assert got.code == step["close"], f"step {i}"
            else:
                assert not isinstance(got, ConnectionClosed), f"step {i}: {got!r}"
                assert got == pytest.approx(expect, rel=1e-9, abs=1e-12), f"step {i}"
        if "attempts" in step:
            assert schedule.attempts == step["attempts"], f"step {i}: attempts"


@pytest.mark.parametrize("case", cases("pacer"))
def test_pacer(case: dict[str, Any]) -> None:
    limit = case["limit"]
    pacer = Pacer.announced(
        limit["messages"], limit["burst"], limit["bytes"], limit["bytes_burst"], case["now"]
    )
    if case.get("none"):
        assert pacer is None
        return
    assert pacer is not None
    assert pacer.in_flight == case["in_flight"]
    for i, step in enumerate(case["steps"]):
        if "charge" in step:
            pacer.charge(step["now"], step["charge"])
        else:
            got = pacer.delay(step["now"], step["delay"])
            assert got == pytest.approx(step["expect"], rel=1e-9, abs=1e-12), f"step {i}"


@pytest.mark.parametrize("case", cases("cursor"))
def test_channel_cursor(case: dict[str, Any]) -> None:
    start = case["position"]
    cursor = ChannelCursor("room", None if start is None else Position(*start))
    for i, step in enumerate(case["steps"]):
        what = f"step {i}"
        if step.get("subscribe"):
            assert pos(cursor.subscribe()) == step["since"], what
        elif step.get("lost"):
            cursor.connection_lost()
        elif step.get("unsub_ack"):
            cursor.on_unsubscribed()
        elif step.get("begin_resync"):
            assert pos(cursor.begin_resync()) == step["since"], what
        elif "msg" in step:
            assert cursor.on_message(*step["msg"]).value == step["expect"], what
        elif "ack" in step:
            o = cursor.on_subscribed(*step["ack"])
            got = {
                "live": o.live, "unrecovered": o.unrecovered, "epoch_changed": o.epoch_changed,
                "previous": pos(o.previous), "resync_from": pos(o.resync_from),
                "missing": o.missing,
            }
            assert got == step["expect"], what
        else:
            pytest.fail(f"{what}: unknown step {step}")
        if "state" in step:
            assert cursor.state.value == step["state"], f"{what}: state"
        if "position" in step:
            assert pos(cursor.position) == step["position"], f"{what}: position"


@pytest.mark.parametrize("case", cases("outbox"))
def test_outbox(case: dict[str, Any]) -> None:
    bounds = case["bounds"]
    outbox = Outbox(max_messages=bounds["max_messages"], max_bytes=bounds["max_bytes"])
    request_of: dict[str, int] = {}  # key -> the pub id it was last sent as
    next_id = 0
    for i, step in enumerate(case["steps"]):
        what = f"step {i}"
        if "add" in step:
            key, channel, data = step["add"]
            error = step.get("error")
            if error == "queue_full":
                with pytest.raises(QueueFull):
                    outbox.add(channel, m.encode_data(data), key)
            elif error == "duplicate":
                with pytest.raises(ValueError, match="already in the outbox"):
                    outbox.add(channel, m.encode_data(data), key)
            else:
                outbox.add(channel, m.encode_data(data), key)
        elif "send" in step:
            entry = outbox.get(step["send"])
            assert entry is not None, what
            next_id += 1
            outbox.assign(entry, next_id)
            request_of[entry.key] = next_id
        elif "ack" in step:
            outbox.ack(request_of[step["ack"]])
        elif "reject" in step:
            outbox.reject(request_of[step["reject"]])
        elif "discard" in step:
            outbox.discard(step["discard"])
        elif step.get("lost"):
            outbox.connection_lost()
        else:
            pytest.fail(f"{what}: unknown step {step}")
        if "unsent" in step:
            assert [e.key for e in outbox.unsent()] == step["unsent"], f"{what}: unsent"
        if "held" in step:
            assert [e.key for e in outbox] == step["held"], f"{what}: held"
        if "size" in step:
            assert len(outbox) == step["size"], f"{what}: size"
        if "bytes" in step:
            assert outbox.total_bytes == step["bytes"], f"{what}: bytes"


def test_every_vector_file_is_run() -> None:
    """A new vector file needs a runner here (or in the test module named below) and in
    js/test/vectors.test.mjs."""
    run = {"backoff", "reconnect", "pacer", "cursor", "outbox"}
    elsewhere = {"binary": Path(__file__).with_name("test_binary.py")}  # the frame codec's
    assert {p.stem for p in VECTORS.glob("*.json")} == run | set(elsewhere)
    for name, module in elsewhere.items():
        assert f"{name}.json" in module.read_text(), name
    js = (Path(__file__).resolve().parents[2] / "js/test/vectors.test.mjs").read_text()
    for name in run | set(elsewhere):
        assert f"load('{name}')" in js, name
