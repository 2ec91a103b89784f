"""The doctor's application presets against small servers written to each protocol:
graphql-transport-ws (the server pings in the application) and Phoenix channels (the
client sends heartbeats; the server only times a silent client out)."""

from __future__ import annotations

import sys
from typing import Any

from tests.doctor.support import ROOT, checks, doctor, start_peer

SERVERS = ROOT / "tests" / "doctor" / "servers"


def run(server: str, preset: str) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    with start_peer([sys.executable, str(SERVERS / server)]) as peer:
        rc, doc, _ = doctor(f"ws://127.0.0.1:{peer.port}/", "--preset", preset,
                            "--max-wait", "4")
    return rc, doc, checks(doc)


def test_graphql_ws_pings_are_answered_and_timed() -> None:
    rc, doc, found = run("graphql_ws_server.py", "graphql-ws")
    assert doc["preset"] == "graphql-ws" and rc == 0
    sub = found["handshake.subprotocol"]
    assert sub["status"] == "PASS" and sub["data"]["selected"] == "graphql-transport-ws"
    pings = found["heartbeat.pings"]
    assert pings["status"] == "PASS" and pings["data"]["kind"] == "application"
    interval = found["heartbeat.interval"]["data"]
    assert interval["evidence"] == "observed" and 0.7 < interval["interval_s"] < 1.5
    dead = found["heartbeat.dead_client"]
    assert dead["status"] == "PASS" and dead["data"]["code"] == 4000
    # The probes are graphql-ws messages the server takes after connection_ack.
    assert found["limits.max_message"]["data"]["largest_accepted"] == 256 * 1024
    assert found["limits.oversize"]["data"]["code"] == 1009


def test_phoenix_heartbeats_come_from_the_client() -> None:
    rc, doc, found = run("phoenix_server.py", "phoenix")
    assert doc["preset"] == "phoenix" and rc == 0
    # Phoenix never pings: a WARN that says so, and the silent client is still dropped.
    pings = found["heartbeat.pings"]
    assert pings["status"] == "WARN" and pings["data"]["observed"] is False
    assert found["heartbeat.interval"]["status"] == "SKIP"
    dead = found["heartbeat.dead_client"]
    assert dead["status"] == "PASS" and dead["data"]["code"] == 1000
    assert 1.5 < dead["data"]["after_s"] < 4
    # The size probes are heartbeats padded to size, which the server answers.
    assert found["limits.max_message"]["data"]["largest_accepted"] == 64 * 1024
    assert found["limits.oversize"]["data"]["code"] == 1009
    # A timeout closed with 1000 (normal) is not what the checklist asks of an error.
    assert found["closes"]["status"] == "WARN"
