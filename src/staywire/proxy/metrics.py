"""The backend's state on /metrics: a breaker gauge per event, and calls by outcome.

Read at scrape time, as ``server/metrics.py`` does, so a proxy call bumps a plain
counter and takes no lock.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from staywire.proxy.client import EVENTS, ProxyClient

__all__ = ["ProxyCollector"]


class ProxyCollector(Collector):
    def __init__(self, client: ProxyClient) -> None:
        self._client = client

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        client = self._client
        state = GaugeMetricFamily(
            "staywire_proxy_breaker_state",
            "circuit breaker of the application's backend, by event: 0 closed (calls go "
            "through), 1 half-open (probing), 2 open (failing fast)", labels=["event"])
        for event in EVENTS:
            state.add_metric([event], float(client.state(event)))
        yield state
        yield GaugeMetricFamily("staywire_proxy_in_flight", "proxy calls in flight",
                                value=client.in_flight)
        calls = CounterMetricFamily("staywire_proxy_calls", "proxy calls, by event and outcome",
                                    labels=["event", "outcome"])
        for (event, outcome), n in sorted(client.outcomes.items()):
            calls.add_metric([event, outcome], n)
        yield calls
        batches = CounterMetricFamily(
            "staywire_proxy_batches", "batch calls (proxy_subscribe_batch), by event",
            labels=["event"])
        items = CounterMetricFamily(
            "staywire_proxy_batched", "calls that went in those batches, by event",
            labels=["event"])
        for event, (n, carried) in sorted(client.batches().items()):
            batches.add_metric([event], n)
            items.add_metric([event], carried)
        yield batches
        yield items
