"""What one ``staywire bench`` run is asked to do: servers, workloads, sizes, time limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from staywire_bench.catalog import EXTRA_WORKLOADS, SERVERS, WORKLOADS

__all__ = ["ALL_WORKLOADS", "GROUP_A", "GROUP_B", "KNOWN_WORKLOADS", "REFERENCE", "BenchConfig",
           "BenchError"]

#: The workloads run against every server (the default set).
ALL_WORKLOADS = WORKLOADS
#: Every workload name the command accepts: the peer workloads and the Staywire-only ones.
KNOWN_WORKLOADS = WORKLOADS + EXTRA_WORKLOADS
GROUP_A = ("echo1", "echo100", "publish")
GROUP_B = ("connrate", "idle", "fanout", "binfanout", "storm")
REFERENCE = "node-ws"


class BenchError(Exception):
    pass


@dataclass
class BenchConfig:
    servers: list[str] = field(default_factory=lambda: list(SERVERS))
    workloads: list[str] = field(default_factory=lambda: list(ALL_WORKLOADS))
    rounds: int = 3
    k: int = 5000  # fan-out subscribers = idle connections = storm clients
    # Fan-out publications. 20, not 50: python-socketio delivers ~6,000 messages/s here, so
    # 5,000 x 50 deliveries alone took ~40 s per round and the run would not stay well
    # under 10 minutes.
    m: int = 20
    echo_duration: float = 1.5
    echo_conns: int = 100
    warmup: float = 0.3
    concurrency: int = 100  # handshakes in flight while opening the K connections
    pad: int = 32  # bytes of padding in each publication
    settle: float = 0.5  # seconds between opening the idle connections and reading VmRSS
    phase_timeout: float = 90.0
    storm_timeout: float = 30.0
    group_timeout: float = 360.0
    backoff_base: float = 0.1
    backoff_cap: float = 5.0
    backoff_retries: int = 20
    # Scale-out latency (the `scaleout` workload): publications paced at lat_rate per
    # second, lat_messages of them (the first lat_warmup not counted), to lat_subs
    # subscribers on node B and lat_ref_subs on node A (the publisher's node: the reference;
    # as many as on B, so that both nodes do the same work and only the path differs).
    lat_subs: int = 500
    lat_ref_subs: int = 500
    lat_rate: float = 20.0
    lat_messages: int = 100
    lat_warmup: int = 5
    # The `sizing` workload: 1..sizing_nodes nodes on one Redis; per subscriber level
    # (0, k/5, k) sizing_pubs acked publications from sizing_publishers connections over
    # sizing_channels channels, and a fan-out of m publications; the nodes' idle CPU is
    # read over sizing_idle_s before each level.
    sizing_nodes: int = 3
    sizing_pubs: int = 2000
    sizing_publishers: int = 20
    sizing_channels: int = 100
    sizing_idle_s: float = 0.5
    # The `transfer` workload: one payload of transfer_mib MiB to transfer_subscribers
    # subscribers through each server (issue 11: 256 MiB, 10 subscribers).
    transfer_mib: float = 256.0
    transfer_subscribers: int = 10
    quick: bool = False
    pin: bool = True
    server_core: int = 0
    gen_core: int = 1
    progress: bool = True
    profile: bool = False
    # Hold /dev/cpu_dma_latency at 0 for the run (what tuned's latency-performance profile
    # does): idle cores poll instead of halting. On a VM, waking a halted vCPU costs ~100 us,
    # which would otherwise dominate every single round trip.
    low_latency: bool = True
    # A group whose measured windows saw other processes busy on the benchmark cores (over
    # noise_pct of a core) is run again, up to this many times; the least noisy attempt is
    # kept. Shared machines are noisy.
    retry_noisy: int = 2
    noise_pct: float = 25.0
    # Seconds the whole run should stay under: noisy groups are run again only while the
    # estimate of what is left still fits.
    budget: float = 480.0
    root: str = "."
    json_path: str = "bench/results/latest.json"
    markdown_path: str = "docs/benchmarks.md"
    chart_path: str = "docs/bench-chart.png"
    command: str = "staywire bench"

    @classmethod
    def quick_defaults(cls) -> dict[str, Any]:
        return dict(rounds=1, k=200, m=10, echo_duration=0.5, warmup=0.2, echo_conns=100,
                    concurrency=50, settle=0.2, phase_timeout=20.0, storm_timeout=20.0,
                    group_timeout=60.0, budget=120.0, backoff_cap=1.0,
                    lat_subs=50, lat_ref_subs=50, lat_rate=50.0, lat_messages=25,
                    sizing_pubs=200, sizing_idle_s=0.2, transfer_mib=16.0,
                    json_path="bench/results/quick.json",
                    markdown_path="bench/results/quick.md",
                    chart_path="bench/results/quick.png")

    def gen_params(self) -> dict[str, Any]:
        return {
            "K": self.k, "M": self.m, "echo_duration": self.echo_duration,
            "echo_conns": self.echo_conns, "warmup": self.warmup,
            "concurrency": self.concurrency, "pad": self.pad, "settle": self.settle,
            "phase_timeout": self.phase_timeout, "storm_timeout": self.storm_timeout,
            "backoff_base": self.backoff_base, "backoff_cap": self.backoff_cap,
            "backoff_retries": self.backoff_retries, "profile": self.profile,
        }

    def scaleout_params(self) -> dict[str, Any]:
        return {**self.gen_params(), "lat_subs": self.lat_subs,
                "lat_ref_subs": self.lat_ref_subs, "lat_rate": self.lat_rate,
                "lat_messages": self.lat_messages, "lat_warmup": self.lat_warmup}

    def sizing_levels(self) -> list[int]:
        """The subscriber counts of the ``sizing`` workload: none, a fifth of K, K."""
        return sorted({0, self.k // 5, self.k})

    def sizing_params(self) -> dict[str, Any]:
        return {**self.gen_params(), "sizing_levels": self.sizing_levels(),
                "sizing_pubs": self.sizing_pubs, "sizing_publishers": self.sizing_publishers,
                "sizing_channels": self.sizing_channels, "sizing_idle_s": self.sizing_idle_s}
