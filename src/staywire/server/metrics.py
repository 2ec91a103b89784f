"""Metrics: plain integer counters on the hot path, exported to Prometheus at scrape time.

prometheus-client's ``Counter.inc`` takes a lock; the fan-out path delivers
hundreds of thousands of messages a second, so it bumps plain ints in
``Stats`` and a custom collector turns them into metric families when
``/metrics`` is read. Each server has its own registry, so several servers in
one process (tests) do not collide.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["NOTABLE_CLOSES", "RECENT", "Stats", "StatsCollector", "render"]

#: Closes the admin page lists one by one: a client too slow to read (4008), one over its
#: rate limit (4029). Every close is counted by code in ``closes`` too.
NOTABLE_CLOSES = frozenset({4008, 4029})
RECENT = 20


class Stats:
    __slots__ = (
        "messages_in", "bytes_in", "messages_out", "bytes_out", "publications",
        "slow_consumer_closes", "rate_limited", "invalid_messages", "closes", "rejections",
        "connections_opened", "broker_errors", "recent_closes",
    )

    def __init__(self) -> None:
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0
        self.publications = 0
        self.slow_consumer_closes = 0
        self.rate_limited = 0
        self.invalid_messages = 0
        self.connections_opened = 0
        self.closes: Counter[int] = Counter()
        self.rejections: Counter[str] = Counter()
        self.broker_errors: Counter[str] = Counter()  # by operation (faults.py)
        # The last slow-consumer and rate-limit closes, newest last (the admin page's
        # table): (unix time, code, reason, user, client); bounded whatever the churn.
        self.recent_closes: deque[tuple[float, int, str, str, str]] = deque(maxlen=RECENT)


class StatsCollector(Collector):
    def __init__(self, stats: Stats, gauges: Callable[[], dict[str, float]]) -> None:
        self._stats = stats
        self._gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self._stats
        for name, value in self._gauges().items():
            yield GaugeMetricFamily(f"staywire_{name}", name.replace("_", " "), value=value)
        plain = {
            "messages_in": ("inbound messages", s.messages_in),
            "bytes_in": ("inbound bytes", s.bytes_in),
            "messages_out": ("outbound messages", s.messages_out),
            "bytes_out": ("outbound bytes written", s.bytes_out),
            "publications": ("publications accepted", s.publications),
            "slow_consumer_closes": ("connections closed as slow consumers",
                                     s.slow_consumer_closes),
            "rate_limited": ("messages rejected by the rate limit", s.rate_limited),
            "invalid_messages": ("messages rejected as invalid", s.invalid_messages),
            "connections_opened": ("connections accepted", s.connections_opened),
        }
        for name, (doc, value) in plain.items():
            yield CounterMetricFamily(f"staywire_{name}", doc, value=value)
        closes = CounterMetricFamily("staywire_closes", "connections closed, by close code",
                                     labels=["code"])
        for code, n in sorted(s.closes.items()):
            closes.add_metric([str(code)], n)
        yield closes
        rejections = CounterMetricFamily("staywire_handshake_rejections",
                                         "handshakes refused, by reason", labels=["reason"])
        for reason, n in sorted(s.rejections.items()):
            rejections.add_metric([reason], n)
        yield rejections
        errors = CounterMetricFamily("staywire_broker_errors",
                                     "broker failures on paths that degrade (sessions, "
                                     "unsubscribe), by operation", labels=["operation"])
        for operation, n in sorted(s.broker_errors.items()):
            errors.add_metric([operation], n)
        yield errors


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
