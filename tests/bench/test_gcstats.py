"""The bench's reading of a node's garbage collections (staywire_bench.gcstats), against
a real server, and the ``staywire-pygc`` server it is compared with."""

from __future__ import annotations

from staywire_bench.gcstats import delta, scrape
from staywire_bench.ports import free_port
from staywire_bench.servers import ALL_SERVERS, ServerContext
from tests.support.servers import ServerProcess

ANON = {"allow_anonymous": True, "anonymous_channels": ["*"]}


def test_scrape_reads_every_generation_of_a_node(server_factory) -> None:
    srv: ServerProcess = server_factory(**ANON)
    before = scrape(srv.api_port)
    assert before is not None and set(before) == {"collections", "pause_s", "max_pause_s"}
    assert all(len(v) == 3 and min(v) >= 0 for v in before.values())
    after = scrape(srv.api_port)
    d = delta(before, after)
    assert d is not None
    assert [d[f"gen{g}"] >= 0 for g in range(3)] == [True] * 3
    assert d["max_pause_ms"] == round(1000 * max(after["max_pause_s"]), 2)


def test_delta_is_the_phase_between_two_readings() -> None:
    a = {"collections": [10, 2, 0], "pause_s": [0.001, 0.002, 0.0], "max_pause_s": [0.0, 0, 0]}
    b = {"collections": [15, 3, 1], "pause_s": [0.0015, 0.004, 0.1], "max_pause_s": [0, 0, 0.1]}
    assert delta(a, b) == {"gen0": 5, "gen0_pause_ms": 0.5, "gen1": 1, "gen1_pause_ms": 2.0,
                           "gen2": 1, "gen2_pause_ms": 100.0, "max_pause_ms": 100.0}
    assert delta(None, b) is None and delta(a, None) is None


def test_no_node_no_reading() -> None:
    assert scrape(None) is None
    assert scrape(free_port()) is None  # nothing listens there


def test_pygc_server_is_staywire_with_the_interpreters_gc(tmp_path) -> None:
    ctx = ServerContext(root=tmp_path)
    argv, _ = ALL_SERVERS["staywire-pygc"].build(ctx, 9999)
    plain, _ = ALL_SERVERS["staywire"].build(ctx, 9999)
    assert argv == [*plain, "--gc-policy", "python"]
