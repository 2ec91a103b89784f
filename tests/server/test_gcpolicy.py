"""The garbage-collection policy (server/gcpolicy.py): what it sets, that cycles are still
collected under it, and the counts /metrics shows. A policy changes the whole process,
so it is applied in a child interpreter, never in the test process."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from staywire.config import Config
from staywire.exceptions import ConfigError
from staywire.server.gcpolicy import MIDDLE, OLD, YOUNG, GcStats, apply_policy
from tests.support.servers import metric

ANON = {"allow_anonymous": True, "anonymous_channels": ["*"]}


def run_child(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_stats_count_each_generation_and_its_pause() -> None:
    stats = GcStats()
    stats.install()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        stats.uninstall()
    assert stats.collections[0] >= 1 and stats.collections[2] >= 2, stats.collections
    assert stats.pause_s[2] > 0 and 0 < stats.max_pause_s[2] <= stats.pause_s[2]
    counted = list(stats.collections)
    gc.collect(2)  # not counted once uninstalled
    assert stats.collections == counted
    assert stats._on_gc not in gc.callbacks


def test_tuned_freezes_start_up_raises_thresholds_and_still_collects_cycles() -> None:
    out = run_child("""
        import gc, json, weakref
        from staywire.server.gcpolicy import GC_STATS, apply_policy
        before = gc.get_threshold()
        apply_policy("tuned")
        apply_policy("tuned")  # a second server in the process: nothing more happens
        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle, unreachable once dropped
        dead = weakref.ref(a)
        del a, b
        keep = []
        for i in range(200_000):  # bounded: ten young thresholds of net allocations
            keep.append([i])
            if dead() is None:
                break
        print(json.dumps({"before": before, "after": gc.get_threshold(),
                          "frozen": gc.get_freeze_count(), "collected": dead() is None,
                          "young": GC_STATS.collections[0],
                          "hooks": gc.callbacks.count(GC_STATS._on_gc)}))
    """)
    assert out["before"] == [700, 10, 10]
    assert out["after"] == [YOUNG, MIDDLE, OLD]
    assert out["frozen"] > 10_000, out  # the modules and classes of start-up
    assert out["collected"] and out["young"] >= 1, out  # automatically, by a young collection
    assert out["hooks"] == 1


def test_python_policy_leaves_the_interpreter_as_it_is_but_counts() -> None:
    out = run_child("""
        import gc, json
        from staywire.server.gcpolicy import GC_STATS, apply_policy
        apply_policy("python")
        gc.collect()
        print(json.dumps({"after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                          "full": GC_STATS.collections[2]}))
    """)
    assert out == {"after": [700, 10, 10], "frozen": 0, "full": 1}


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="gc_policy must be one of tuned, python, got 'off'"):
        apply_policy("off")
    with pytest.raises(ConfigError, match="gc_policy must be 'tuned' or 'python'"):
        Config(gc_policy="off")


@pytest.mark.parametrize("policy", ["tuned", "python"])
def test_metrics_show_the_collections(server_factory, policy: str) -> None:
    srv = server_factory(gc_policy=policy, **ANON)
    with urllib.request.urlopen(f"{srv.api}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    frozen = metric(srv.api, "staywire_gc_frozen_objects")
    assert (frozen > 10_000) if policy == "tuned" else frozen == 0
    for generation in range(3):
        label = f'generation="{generation}"'
        assert f"staywire_gc_collections_total{{{label}}}" in text
        assert f"staywire_gc_pause_seconds_total{{{label}}}" in text
    assert 'staywire_gc_max_pause_seconds{generation="2"}' in text
