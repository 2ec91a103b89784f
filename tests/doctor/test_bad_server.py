"""A server written to be bad: the doctor must name each fault."""

from __future__ import annotations

import sys

from tests.doctor.support import ROOT, checks, doctor, start_peer

BAD = ROOT / "tests" / "doctor" / "servers" / "bad_server.py"


def test_every_fault_is_named() -> None:
    with start_peer([sys.executable, str(BAD)]) as peer:
        rc, doc, _ = doctor(f"ws://127.0.0.1:{peer.port}/", "--slow", "--idle-timeout", "2",
                            "--max-wait", "3", "--max-probe-size", "64KiB")
    found = checks(doc)
    assert rc == 1
    origin = found["origin.foreign"]
    assert origin["status"] == "FAIL" and origin["data"]["takes_cookies"] is True
    assert "$http_origin" in origin["fix"]
    assert found["heartbeat.pings"]["status"] == "FAIL"
    assert found["heartbeat.interval"]["status"] == "FAIL"
    assert found["heartbeat.dead_client"]["status"] == "FAIL"
    oversize = found["limits.oversize"]
    assert oversize["status"] == "FAIL" and oversize["data"]["close_frame"] is False
    assert oversize["data"]["size"] == 16 * 1024
    assert found["limits.max_message"]["data"]["largest_accepted"] == 8 * 1024
