"""The doctor against other servers with their defaults: a bare ``websockets`` server
and the bench's Node ``ws`` and socket.io peers. The verdicts are docs/doctor.md's table."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.doctor.support import ROOT, checks, doctor, start_peer

SERVERS = ROOT / "tests" / "doctor" / "servers"
NODE_PEERS = ROOT / "bench" / "peers" / "node"


@pytest.fixture(scope="module")
def node() -> str:
    from staywire_bench.servers import node_ready

    found = node_ready(ROOT, lambda line: None)  # npm install of the pinned peers, once
    if found is None or shutil.which("node") is None:
        pytest.skip("node or the Node peers' packages are not available")
    return found


def test_bare_websockets_defaults() -> None:
    with start_peer([sys.executable, str(SERVERS / "bare_websockets.py")]) as peer:
        rc, doc, _ = doctor(f"ws://127.0.0.1:{peer.port}/", "--max-wait", "2")
    found = checks(doc)
    assert doc["preset"] is None
    assert found["handshake.upgrade"]["status"] == "PASS"
    assert found["handshake.connection_list"]["status"] == "PASS"
    assert found["origin.foreign"]["status"] == "WARN"  # no Origin check, no cookie
    assert found["limits.max_message"]["data"]["largest_accepted"] == 1 << 20
    assert found["limits.oversize"]["status"] == "PASS"
    assert found["limits.utf8"]["status"] == "PASS"
    # It pings every 20 s: longer than a 2 s watch can tell.
    assert found["heartbeat.pings"]["status"] == "WARN"
    assert found["closes"]["status"] == "PASS"
    assert rc == 0


def test_node_ws_defaults(node: str) -> None:
    with start_peer([node, "ws_server.js"], cwd=NODE_PEERS) as peer:
        rc, doc, _ = doctor(f"ws://127.0.0.1:{peer.port}/", "--max-wait", "2",
                            "--max-probe-size", "4MiB")
    found = checks(doc)
    assert found["handshake.upgrade"]["status"] == "PASS"
    assert found["origin.foreign"]["status"] == "WARN"
    # ws accepts 100 MiB by default: nothing refused up to the probe's bound.
    assert found["limits.max_message"]["status"] == "WARN"
    assert found["limits.max_message"]["data"]["largest_accepted"] == 4 << 20
    assert found["limits.oversize"]["status"] == "SKIP"
    assert found["limits.utf8"]["status"] == "PASS"
    assert found["closes"]["status"] == "WARN"  # 1007 without a reason
    assert found["heartbeat.pings"]["status"] == "WARN"
    assert rc == 0


def test_socketio_defaults(node: str) -> None:
    with start_peer([node, "socketio_server.js"], cwd=NODE_PEERS) as peer:
        rc, doc, _ = doctor(f"ws://127.0.0.1:{peer.port}/socket.io/?EIO=4&transport=websocket",
                            "--max-wait", "2")
    found = checks(doc)
    assert doc["preset"] == "socketio" and doc["preset_source"] == "detected"
    assert found["heartbeat.interval"]["data"]["interval_s"] == 25.0
    assert found["heartbeat.dead_client"]["status"] == "PASS"
    assert found["limits.max_message"]["data"]["largest_accepted"] == 512 * 1024
    assert found["limits.oversize"]["data"]["code"] == 1009
    assert found["query.tokens"]["status"] == "PASS"
    assert rc == 0
