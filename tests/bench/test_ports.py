"""The port picker the suite and the bench share, and the server start that survives a race.

CI once failed because a port picked with bind(0) was handed by the kernel to some
client's outgoing connection before the server process could listen on it.
"""

from __future__ import annotations

import socket

import pytest

from staywire_bench import ports
from tests.support import servers


def test_ports_come_from_below_the_ephemeral_range_and_are_never_repeated() -> None:
    low, _high = ports._ephemeral_range()
    picked = [ports.free_port() for _ in range(200)]
    assert len(set(picked)) == len(picked)
    assert all(ports._LOWEST <= p < low for p in picked)
    for port in picked[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nothing holds it


def test_a_port_that_something_holds_is_not_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        candidates = iter([taken, taken, 12_345])
        monkeypatch.setattr(ports.random, "randint", lambda a, b: next(candidates))
        monkeypatch.setattr(ports, "_handed_out", set())
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # any port is this one's
        assert ports.free_port() == 12_345


def test_each_xdist_worker_picks_from_a_slice_of_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Workers are processes that do not share _handed_out: without slices two of them
    # could pick one port in the moment before its server binds it.
    monkeypatch.setattr(ports, "_handed_out", set())
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    for index in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        assert {ports.free_port() % 3 for _ in range(50)} == {index}


def test_server_start_moves_to_new_ports_when_its_port_was_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken, servers.free_port()])
        monkeypatch.setattr(servers, "free_port", lambda: next(picks, None) or ports.free_port())
        srv = servers.ServerProcess({"allow_anonymous": True})
        assert srv.port == taken
        try:
            srv.start()
            assert srv.port != taken
            assert "address already in use" in srv.log()
            servers.wait_http(f"{srv.api}/healthz")
            srv.restart()  # restarts keep the ports that worked
            assert srv.port != taken
        finally:
            srv.close()
