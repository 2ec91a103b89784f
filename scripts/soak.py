"""Soak: hold many connections with traffic and churn; RSS and descriptors must stay flat.

    python scripts/soak.py --connections 5000 --minutes 30     # `make soak`
    python scripts/soak.py --connections 1000 --minutes 0.5    # the CI run (tests/hardening)

One server process, one load process (this one, on uvloop with picows clients).
Every client subscribes to one of `--channels` channels and answers the server's
pings; a publisher sends to every channel each second; every 5 s a slice of the
clients disconnects and reconnects with `since`, so leaks on connect/close paths
show. The server's RSS and open descriptors are sampled every `--sample` seconds.
Verdict: after warm-up, the last quarter's mean RSS is within `--rss-slack` of the
first quarter's and the descriptor count returns to where it was.
Loopback only; every loop is bounded by the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.servers import ServerProcess  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class SoakClient(WSListener):
    def __init__(self, channel: str, since: tuple[str, int] | None) -> None:
        self.channel = channel
        self.since = since
        self.position: tuple[str, int] | None = since
        self.received = 0
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        sub: dict[str, object] = {"type": "sub", "id": 1, "channel": self.channel}
        if self.since is not None:
            sub["since"] = {"epoch": self.since[0], "offset": self.since[1]}
        transport.send(WSMsgType.TEXT, json.dumps(sub).encode())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        msg = json.loads(frame.get_payload_as_bytes())
        kind = msg.get("type")
        if kind == "ping":
            transport.send(WSMsgType.TEXT, b'{"type":"pong","t":%d}' % msg.get("t", 0))
        elif kind == "msg":
            self.received += 1
            self.position = (msg["epoch"], msg["offset"])


async def soak(args: argparse.Namespace) -> dict[str, object]:
    srv = ServerProcess({"allow_anonymous": True, "anonymous_channels": ["*"],
                         "max_connections_per_ip": args.connections * 2,
                         "handshake_burst": args.connections * 2,
                         "ping_interval": 5, "pong_timeout": 5, "log_level": "warning",
                         "api_key": "soak"})
    srv.start()
    url = srv.url
    clients: list[SoakClient] = []
    samples: list[tuple[float, int, int]] = []
    deadline = time.monotonic() + args.minutes * 60
    rng = random.Random(7)

    async def open_client(channel: str, since: tuple[str, int] | None) -> SoakClient:
        _, client = await ws_connect(lambda: SoakClient(channel, since), url,
                                     read_buffer_init_size=1024)
        return client  # type: ignore[return-value]

    try:
        for i in range(0, args.connections, 200):
            batch = [open_client(f"soak:{(i + j) % args.channels}", None)
                     for j in range(min(200, args.connections - i))]
            clients += await asyncio.gather(*batch)
        publisher = await open_client("soak:publisher", None)
        assert publisher.transport is not None
        await asyncio.sleep(1)
        started = time.monotonic()
        next_sample = next_churn = started
        n = 0
        while time.monotonic() < deadline:
            now = time.monotonic()
            for c in range(args.channels):
                n += 1
                publisher.transport.send(WSMsgType.TEXT, json.dumps(
                    {"type": "pub", "id": n, "channel": f"soak:{c}", "data": {"n": n}}).encode())
            if now >= next_churn:
                next_churn = now + 5
                for idx in rng.sample(range(len(clients)), max(1, len(clients) // 50)):
                    old = clients[idx]
                    assert old.transport is not None
                    old.transport.disconnect()
                    clients[idx] = await open_client(old.channel, old.position)
            if now >= next_sample:
                next_sample = now + args.sample
                samples.append((now - started, rss_kib(srv.pid), fd_count(srv.pid)))
            await asyncio.sleep(1)
        samples.append((time.monotonic() - started, rss_kib(srv.pid), fd_count(srv.pid)))
        received = sum(c.received for c in clients)
    finally:
        for c in clients:
            if c.transport is not None:
                c.transport.disconnect()
        srv.close()
    # Warm-up: the first fifth is allocator and history filling up.
    steady = samples[max(1, len(samples) // 5):]
    quarter = max(1, len(steady) // 4)
    first = sum(s[1] for s in steady[:quarter]) / quarter
    last = sum(s[1] for s in steady[-quarter:]) / quarter
    fds_first, fds_last = steady[0][2], steady[-1][2]
    return {
        "connections": args.connections, "minutes": args.minutes, "samples": samples,
        "rss_first_kib": round(first), "rss_last_kib": round(last),
        "rss_growth": round(last / first - 1, 4), "fds_first": fds_first, "fds_last": fds_last,
        "messages_received": received,
        "flat": last <= first * (1 + args.rss_slack) and abs(fds_last - fds_first) <= 2,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--channels", type=int, default=50)
    ap.add_argument("--sample", type=float, default=10.0)
    ap.add_argument("--rss-slack", type=float, default=0.10)
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    result = uvloop.run(soak(args))
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary))
    return 0 if result["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
