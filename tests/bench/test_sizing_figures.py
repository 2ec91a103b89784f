"""The ``sizing`` workload's arithmetic: CPU per unit from two snapshots, the medians,
the n-nodes / one-node ratios, the sizing model's inputs and its markdown; no server."""

from __future__ import annotations

import os

import pytest

from staywire_bench import procfs
from staywire_bench.redis_cpu import _calls
from staywire_bench.sizing_cpu import Snapshot, per_unit
from staywire_bench.sizing_markdown import markdown_section
from staywire_bench.sizing_report import line, summarize_sizing


def snap(wall: float, nodes: tuple[float, ...], redis: float, publishes: int,
         gen: float = 0.0, busy: float = 0.0) -> Snapshot:
    return Snapshot(wall=wall, nodes_run=nodes, nodes_stat=nodes, redis=redis,
                    calls={"publish": publishes, "evalsha": publishes, "info": 7},
                    generator=gen, busy=busy)


def test_per_unit_sums_the_nodes_and_takes_redis_idle_off() -> None:
    a = snap(10.0, (1.0, 2.0), redis=5.0, publishes=100, gen=1.0, busy=50.0)
    b = snap(12.0, (1.5, 2.3), redis=5.05, publishes=1100, gen=1.4, busy=52.0)
    use = per_unit(a, b, 1000, redis_idle_per_s=0.005)
    assert use["node_us"] == pytest.approx(800.0)  # (0.5 + 0.3) s / 1000
    assert use["node_cpu_pct"] == pytest.approx([25.0, 15.0])
    # 0.05 s used, 0.01 s of it idle (2 s at 0.005 s/s): 40 µs per publication.
    assert use["redis_us"] == pytest.approx(40.0)
    assert use["redis_publishes"] == 1000
    assert use["redis_calls_per_unit"] == {"evalsha": 1.0, "publish": 1.0}  # no "info"
    assert use["gen_cpu_pct"] == pytest.approx(20.0)
    # Machine: 2 s busy; ours 0.8 + 0.05 + 0.4 = 1.25 s: 0.75 s of others in 2 s.
    assert use["other_cpu_pct"] == pytest.approx(37.5)


def test_per_unit_with_a_node_gone_or_no_units_says_none() -> None:
    a = Snapshot(0.0, (1.0, None), (1.0, None), None, None, 0.0, None)
    b = Snapshot(1.0, (2.0, 3.0), (2.0, 3.0), None, None, 0.0, None)
    use = per_unit(a, b, 10)
    assert use["node_us"] is None and use["redis_us"] is None
    assert use["other_cpu_pct"] is None
    assert per_unit(b, b, 0)["node_us"] is None


def test_run_seconds_of_this_process_grows_and_agrees_with_process_time() -> None:
    before, cpu0 = procfs.run_seconds(), os.times()
    total = 0
    for i in range(300_000):  # bounded busy work
        total += i * i
    after, cpu1 = procfs.run_seconds(), os.times()
    assert before is not None and after is not None and after > before
    spent = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    assert after - before == pytest.approx(spent, abs=0.05)  # ticks vs nanoseconds
    assert procfs.run_seconds(2**22 + 12345) is None  # no such process


def test_commandstats_are_parsed_per_command() -> None:
    data = (b"$120\r\n# Commandstats\r\ncmdstat_publish:calls=12,usec=30,usec_per_call=2.5"
            b"\r\ncmdstat_evalsha:calls=12,usec=400\r\ncmdstat_script|load:calls=1,usec=9\r\n")
    assert _calls(data) == {"publish": 12, "evalsha": 12, "script|load": 1}


def test_line_through_points() -> None:
    assert line([(1.0, 20.0), (2.0, 23.0), (3.0, 26.0)]) == pytest.approx((17.0, 3.0))
    assert line([(1.0, 20.0)]) is None


def record(workload: str, nodes: int, rnd: int, subs: int, node_us: float,
           redis_us: float | None = None, complete: bool = True) -> dict[str, object]:
    return {"workload": workload, "nodes": nodes, "round": rnd, "metrics": {
        "subscribers": subs, "complete": complete, "node_us": node_us,
        "deliveries": subs,  # 100 acked, each to 10 subscribers (1,000 on 100 channels)
        "node_stat_us": node_us, "redis_us": redis_us, "rate": 1000.0, "acked": 100,
        "redis_publishes": 100, "redis_calls_per_unit": {"publish": 1.0},
        "idle_node_cpu_pct": [0.5] * nodes, "loadavg": "3.10 2.00 1.00",
        "rss_kib_per_conn": 6.0 + nodes, "rss_kib": 40_000 * nodes + 10 * subs}}


def sample() -> dict[str, object]:
    recs = []
    for rnd in range(3):
        for n in (1, 2, 3):
            recs.append(record("publish", n, rnd, 0, 30.0 * n, redis_us=10.0 + 2.0 * n))
            recs.append(record("publish", n, rnd, 1000, 300.0, redis_us=12.0 + 3.0 * n))
            recs.append(record("publish1", n, rnd, 0, 100.0, redis_us=40.0))
            recs.append(record("publish1", n, rnd, 1000, 400.0, redis_us=44.0 + 5.0 * n))
            recs.append(record("fanout", n, rnd, 1000, 1.0 + 0.05 * (n - 1) + 0.01 * rnd))
            recs.append(record("paced", n, rnd, 1000, 8.0 * (1.0 + 0.2 * (n - 1))))
    recs.append(record("paced", 3, 3, 1000, 999.0, complete=False))  # left out
    meta = {"command": "staywire bench --workloads sizing", "started": "now",
            "duration_s": 50.0, "quick": False, "loadavg_at_start": "3.00 2.00 1.00",
            "loadavg_at_end": "3.50 2.00 1.00", "staywire_command": "staywire serve",
            "machine": {"cpu": "test CPU", "cores": 2},
            "config": {"rounds": 3, "k": 1000, "m": 20, "levels": [0, 200, 1000],
                       "sizing_pubs": 2000, "sizing_publishers": 20,
                       "sizing_channels": 100, "sizing_idle_s": 0.5}}
    return summarize_sizing(meta, recs, ["a warning"])


def test_summary_medians_ratios_and_model() -> None:
    sz = sample()
    rows = sz["summary"]
    assert rows["fanout 1 1000"]["node_us"] == pytest.approx(1.01)
    assert rows["paced 3 1000"]["rounds"] == 3  # the incomplete record is not counted
    assert rows["publish 2 0"]["idle_node_cpu_pct"] == pytest.approx(1.0)
    assert rows["publish 1 0"]["loadavg_1m"] == pytest.approx(3.1)
    ratios = sz["ratios"]
    assert ratios["fanout 3 vs 1 at 1000"]["ratio"] == pytest.approx(1.11 / 1.01)
    assert ratios["paced 2 vs 1 at 1000"]["per_round"] == pytest.approx([1.2, 1.2, 1.2])
    model = sz["model"]
    assert model["paced_deliveries_per_core"] == pytest.approx(1e6 / (8.0 * 1.4))
    assert model["publish_per_core"] == pytest.approx(1e6 / 90.0)  # the dearest: 3 nodes
    assert model["publish1_per_core"] == pytest.approx(1e6 / 100.0)
    assert model["rss_kib_per_conn"] == pytest.approx(9.0)  # the dearest: 3 nodes
    assert model["connections_per_gib"] == pytest.approx(1024 * 1024 / 9.0)
    assert model["node_base_rss_mib"] == pytest.approx(40_000 / 1024)
    assert model["publish_redis_us_worst"] == pytest.approx(21.0)
    assert model["publish1_redis_per_core"] == pytest.approx(1e6 / 59.0)
    assert (model["publish_redis_us_fixed"], model["publish_redis_us_per_node"]) \
        == pytest.approx((12.0, 3.0))
    assert model["publish1_redis_us_per_node"] == pytest.approx(5.0)
    # Small fan-out: 10 deliveries per publication; 1 node: (300 - 30) / 10 µs, the dearest.
    assert model["publish_small_delivery_us"] == pytest.approx(27.0)
    assert model["publish_small_per_node"] == pytest.approx(10.0)
    # Less 10 deliveries at t_d = 11.2 µs (paced, 3 nodes), per node: 1 node (270 - 112),
    # 3 nodes (210 - 112) / 3.
    assert model["publish_receive_us"] == pytest.approx(158.0)
    assert model["publish_receive_us_min"] == pytest.approx(98.0 / 3)
    # 1.5% of a core (3 nodes x 0.5%) over 1,000 connections: 15 µs per connection-second.
    assert model["idle_us_per_conn_s"] == pytest.approx(15.0)


def test_markdown_shows_the_goal_the_tables_and_the_command() -> None:
    text = "\n".join(markdown_section(sample()))
    assert "## Sizing: CPU per delivery and per publication" in text
    assert "staywire bench --workloads sizing" in text
    # Back to back: 3 nodes at 1.10x of one node (1.11 / 1.01): met; one at a time: 1.40x: not met.
    assert "| node CPU per delivery (back to back) with 2 and 3 nodes" in text
    goal_lines = [ln for ln in text.splitlines() if ln.startswith("| node CPU per delivery (")]
    assert goal_lines[0].endswith("| **met** |") and goal_lines[1].endswith("| **not met** |")
    assert "| one at a time | 3 | 1,000 | 11.20 |" in text
    assert "| many in flight | 3 | 1,000 | 21.0 | 1.00 | publish 1.00 |" in text
    assert "| one in flight | 3 | 1,000 | 59.0 | 1.00 | publish 1.00 |" in text
    assert "12.0 µs + 3.0 µs per node" in text and "44.0 µs + 5.0 µs per node" in text
    assert "| 9.00 KiB | 116,508 connections per GiB |" in text
    assert "* a warning" in text
