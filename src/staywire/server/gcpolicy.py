"""The node's garbage-collection policy, and the count of the collections it leaves.

CPython's cycle collector runs a full (generation 2) collection when the objects that
survived into the oldest generation grew by a quarter since the last one (and ten
generation-1 collections passed). A node holding thousands of connections has hundreds
of thousands of long-lived objects (its modules, then each connection's state), so
while connections open and subscribe it keeps running full collections that walk all of
them: 0.085-0.25 s each with 5,000 connections (issue 14's proxy bench), every request
of every connection waiting meanwhile.

``tuned`` (the default, option ``gc_policy``; docs/configuration.md):

* ``gc.freeze()`` once the node is built, before its port opens: the objects of
  start-up (modules, classes, the node's own parts), which live as long as the process,
  move to the permanent generation and are never walked again;
* thresholds ``(YOUNG, MIDDLE, OLD)`` instead of ``(700, 10, 10)``: a young collection
  after 20,000 net allocations instead of 700 (6 of them while 5,000 connections open,
  1.5-2.5 ms each, instead of 165), a full one considered after 10 x 100 young
  ones instead of 10 x 10, i.e. after about 20 million net allocations (and, as
  always, only once the old generation grew by a quarter). 50,000 made young
  collections of up to 6-46 ms; ``gc.freeze()`` alone still ran full collections of
  46-65 ms while 5,000 connections subscribed. Cycles are still collected by every young and
  middle collection, and the full ones still run, rarely: memory stays bounded
  (scripts/soak.py, tests/hardening/test_soak.py).

``python`` leaves the interpreter's defaults. The choice of the figures, measured with
``staywire bench``, is in docs/benchmarks.md (*Garbage collection*).

Whatever the policy, ``GC_STATS`` counts the collections of each generation and the time
they took (a ``gc.callbacks`` hook: two clock reads per collection); ``/metrics`` shows
them as ``staywire_gc_collections_total`` and ``staywire_gc_pause_seconds_total``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["GC_STATS", "POLICIES", "GcCollector", "GcStats", "apply_policy"]

POLICIES = ("tuned", "python")

#: The ``tuned`` thresholds (gc.set_threshold), chosen by measurement (module docstring).
YOUNG = 20_000
MIDDLE = 10
OLD = 100


class GcStats:
    """Collections and pause seconds per generation, from a ``gc.callbacks`` hook."""

    __slots__ = ("collections", "pause_s", "max_pause_s", "_started", "_installed")

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause_s = [0.0, 0.0, 0.0]
        self.max_pause_s = [0.0, 0.0, 0.0]
        self._started = 0.0
        self._installed = False

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.collections[generation] += 1
        self.pause_s[generation] += took
        if took > self.max_pause_s[generation]:
            self.max_pause_s[generation] = took

    def install(self) -> None:
        """Start counting (once per process: the collector is the process's)."""
        if not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_gc)
            self._installed = False


#: The process's one count: several servers in one process (tests) share the collector.
GC_STATS = GcStats()
_applied: str | None = None


def apply_policy(policy: str) -> None:
    """Apply ``policy`` (one of ``POLICIES``) to this process; call it once the node has
    been built, so that ``tuned`` freezes what start-up made. Counting starts either way."""
    # The check is Config's too; this one is for a caller without a Config.
    if policy not in POLICIES:
        raise ValueError(f"gc_policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    global _applied
    if policy == "tuned" and _applied != policy:  # once per process (tests run several)
        _applied = policy
        gc.collect()  # start-up's own garbage is not frozen with what lives on
        gc.freeze()
        gc.set_threshold(YOUNG, MIDDLE, OLD)
    GC_STATS.install()  # after that collection: the count is of the serving node's


class GcCollector(Collector):
    """``GC_STATS`` (or another count) as Prometheus metrics."""

    def __init__(self, stats: GcStats = GC_STATS) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self._stats
        collections = CounterMetricFamily("staywire_gc_collections",
                                          "garbage collections, by generation",
                                          labels=["generation"])
        pauses = CounterMetricFamily("staywire_gc_pause_seconds",
                                     "seconds spent in garbage collections, by generation",
                                     labels=["generation"])
        longest = GaugeMetricFamily("staywire_gc_max_pause_seconds",
                                    "the longest garbage collection so far, by generation",
                                    labels=["generation"])
        for generation in range(3):
            label = [str(generation)]
            collections.add_metric(label, s.collections[generation])
            pauses.add_metric(label, s.pause_s[generation])
            longest.add_metric(label, s.max_pause_s[generation])
        yield collections
        yield pauses
        yield longest
        yield GaugeMetricFamily("staywire_gc_frozen_objects",
                                "objects in the permanent generation (gc.freeze)",
                                value=gc.get_freeze_count())
