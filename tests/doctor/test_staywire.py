"""The doctor against Staywire itself: its defaults, and fast heartbeats watched for real."""

from __future__ import annotations

import time


from tests.conftest import ANON
from tests.doctor.support import checks, doctor

# Checks that cannot apply without flags: ws:// has no TLS; idle survival needs --slow;
# the flood needs --flood.
NOT_RUN_BY_DEFAULT = {"tls", "idle.survival", "limits.flood"}


def test_defaults_pass_in_a_few_seconds(server_factory) -> None:
    srv = server_factory(**ANON)
    started = time.monotonic()
    rc, doc, _ = doctor(srv.url)
    took = time.monotonic() - started
    found = checks(doc)
    assert doc["preset"] == "staywire" and doc["preset_source"] == "detected"
    assert took < 5, took
    assert {i for i, c in found.items() if c["status"] == "SKIP"} == NOT_RUN_BY_DEFAULT
    bad = {i: c["saw"] for i, c in found.items() if c["status"] in ("WARN", "FAIL")}
    assert not bad, bad
    assert found["heartbeat.interval"]["data"] == {
        "interval_s": 25.0, "evidence": "announced", "idle_timeout_s": 60.0}
    assert found["limits.max_message"]["data"]["largest_accepted"] == 65536
    assert found["limits.oversize"]["data"]["code"] == 1009
    assert found["limits.utf8"]["data"]["code"] == 1007
    assert found["origin.foreign"]["data"]["foreign_status"] == 403
    assert rc == 0


def test_firefox_connection_header_is_accepted(server_factory) -> None:
    srv = server_factory(**ANON)
    _, doc, _ = doctor(srv.url)
    assert checks(doc)["handshake.connection_list"]["status"] == "PASS"


def test_fast_heartbeats_are_watched_with_slow(server_factory) -> None:
    srv = server_factory(**ANON, ping_interval=1, pong_timeout=1)
    rc, doc, _ = doctor(srv.url, "--slow", "--idle-timeout", "3", "--max-wait", "6", "--flood")
    found = checks(doc)
    pings = found["heartbeat.pings"]
    assert pings["status"] == "PASS" and pings["data"]["observed"] is True
    assert pings["data"]["kind"] == "application"
    interval = found["heartbeat.interval"]["data"]
    assert interval["evidence"] == "observed" and 0.7 < interval["interval_s"] < 1.5
    dead = found["heartbeat.dead_client"]
    assert dead["status"] == "PASS" and dead["data"]["code"] == 4000
    assert 1.5 < dead["data"]["after_s"] < 4
    assert found["idle.survival"]["status"] == "PASS"
    assert found["idle.survival"]["data"]["waited_s"] >= 5
    flood = found["limits.flood"]
    assert flood["status"] == "PASS" and flood["data"]["closed_code"] == 4029
    codes = {c["code"] for c in found["closes"]["data"]["closes"]}
    assert {1009, 1007, 4000, 4029} <= codes and found["closes"]["status"] == "PASS"
    assert rc == 0 and not [i for i, c in found.items() if c["status"] == "FAIL"]


def test_origin_option_and_allowed_origin(server_factory) -> None:
    srv = server_factory(**ANON, allowed_origins=["http://app.test"])
    _, doc, _ = doctor(srv.url, "--origin", "http://app.test", "--max-wait", "1")
    found = checks(doc)
    assert found["origin.foreign"]["status"] == "PASS"
    assert found["origin.missing"]["status"] == "PASS"


def test_query_token_is_a_warning(server_factory) -> None:
    srv = server_factory(**ANON)
    _, doc, _ = doctor(srv.url + "?token=abc", "--max-wait", "1")
    tokens = checks(doc)["query.tokens"]
    assert tokens["status"] == "WARN" and tokens["data"]["token_like"] == ["token"]
    assert "$uri" in tokens["fix"]


def test_app_ping_given_by_hand(server_factory) -> None:
    srv = server_factory(**ANON, ping_interval=1, pong_timeout=1)
    _, doc, _ = doctor(srv.url, "--preset", "none", "--app-ping", '{"type":"ping"}',
                       "--app-pong", '{"type":"pong"}', "--max-wait", "3")
    found = checks(doc)
    assert doc["preset"] == "custom" and doc["preset_source"] == "given"
    assert found["heartbeat.pings"]["data"]["kind"] == "application"
    assert found["heartbeat.interval"]["data"]["evidence"] == "observed"
    # Without the preset the same pings go unanswered and the server drops the watcher.
    _, doc, _ = doctor(srv.url, "--preset", "none", "--max-wait", "3")
    pings = checks(doc)["heartbeat.pings"]
    assert pings["status"] == "WARN" and "4000" in pings["saw"]
