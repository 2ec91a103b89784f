"""What a channel with N presence members costs a node: memory, and CPU per minute.

    .venv/bin/python scripts/presence_cost.py --members 10000 --seconds 60
    .venv/bin/python scripts/presence_cost.py --members 10000 --seconds 60 --redis redis://127.0.0.1:6379/0

It runs the node's real presence code (server/presence.py over the memory store, or
over RedisPresence with --redis) with N members of one channel, as N subscriptions
of N users would make them, and reports:

* the Python memory the members hold on the node (tracemalloc, after joining them);
* the CPU the node then spends per minute keeping them (getrusage over ``--seconds``
  of the node's own presence timer: grace deadlines, and with Redis the heartbeat
  and the sweep for dead nodes), idle otherwise; with ``--churn N``, N members a
  minute reconnect meanwhile (their connection drops, a new one of the same user
  subscribes: the grace period absorbs it);
* the CPU of joining them, of one ``presence`` answer (over the bound: counts only)
  and of one full listing, and with Redis the memory of the channel's keys there.

Connections themselves (sockets, buffers, the subscription) are not counted: they are
the same with or without presence (docs/benchmarks.md has their cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

from staywire.brokers.presence import MemoryPresence, PresenceStore
from staywire.channel_options import parse_channel_rules
from staywire.config import Config
from staywire.protocol.codes import ErrorCode
from staywire.protocol.envelope import PresenceQuery
from staywire.server.auth import Identity
from staywire.server.presence import Presence

CHANNEL = "room:big"


@dataclass
class Conn:
    """The part of a connection presence reads (server/presence.py ``Present``)."""

    id: str
    identity: Identity
    session: str = ""
    presence_info: bytes | None = None
    subs: dict[str, Any] | None = None
    last: bytes = b""

    def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None,
                   channel: str | None = None) -> None:
        raise AssertionError(f"{code}: {reason}")

    def enqueue(self, frame: bytes) -> None:
        self.last = frame


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(members: int, seconds: float, redis: str | None, bound: int,
                  trace: bool = True, churn: int = 0) -> dict[str, Any]:
    rules = parse_channel_rules({"room:*": {"presence": True, "join_leave": True,
                                            "presence_max_members": bound}}, "bench")
    cfg = Config(channels=rules, broker=redis or "memory")
    store: PresenceStore
    if redis:
        from staywire.brokers.presence_redis import RedisPresence

        store = RedisPresence(redis, prefix=f"cost{time.time_ns()}:", ttl=cfg.presence_ttl)
    else:
        store = MemoryPresence()
    events = 0

    def deliver(channel: str, frame: bytes) -> None:
        nonlocal events
        events += 1

    conns = [Conn(f"{i:016x}", Identity(user=f"user-{i}"), subs={CHANNEL: None})
             for i in range(members)]
    presence = Presence(cfg, store, deliver)
    await presence.start()
    if trace:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
    t0 = cpu()
    for conn in conns:
        presence.joined(CHANNEL, conn)
    while presence._worker is not None:  # Redis: the ordered worker drains the joins
        await asyncio.sleep(0.01)
    join_cpu = cpu() - t0
    held = 0
    if trace:
        after = tracemalloc.take_snapshot()
        held = sum(s.size_diff for s in after.compare_to(before, "filename"))
        tracemalloc.stop()

    t0 = cpu()
    await presence.answer(conns[0], PresenceQuery(id=1, channel=CHANNEL))
    answer_cpu = cpu() - t0
    stats = json.loads(conns[0].last[conns[0].last.index(b"{"):])["data"]
    t0 = cpu()
    snap = await store.snapshot(CHANNEL, members)
    listing_cpu = cpu() - t0
    assert snap.members is not None and len(snap.members) == members

    redis_bytes = None
    if redis:
        r = store._redis  # type: ignore[attr-defined]
        keys = store._keys(CHANNEL)  # type: ignore[attr-defined]
        redis_bytes = 0
        for key in keys:
            redis_bytes += int(await r.memory_usage(key, samples=0) or 0)

    t0, w0 = cpu(), time.monotonic()
    if not churn:
        await asyncio.sleep(seconds)  # the node idles with its members: only presence's timer
    else:
        every = 60.0 / churn
        reconnects = 0
        while time.monotonic() - w0 < seconds:
            i = reconnects % members
            old = conns[i]
            presence.left(CHANNEL, old, gone=True)  # its connection dropped...
            conns[i] = Conn(f"r{reconnects:015x}", old.identity, subs={CHANNEL: None})
            presence.joined(CHANNEL, conns[i])  # ...and it is back at once, as a new client
            reconnects += 1
            await asyncio.sleep(every)
    idle_cpu = cpu() - t0
    wall = time.monotonic() - w0
    await presence.close()
    return {
        "store": "redis" if redis else "memory",
        "members": members,
        "presence_max_members": bound,
        "python_bytes_held": held,
        "bytes_per_member": round(held / members),
        "join_all_cpu_s": round(join_cpu, 3),
        "presence_answer_cpu_ms": round(answer_cpu * 1000, 3),
        "presence_answer": stats,
        "full_listing_cpu_ms": round(listing_cpu * 1000, 2),
        "redis_bytes": redis_bytes,
        "churn_reconnects_per_minute": churn,
        "cpu_s_per_minute": round(idle_cpu * 60 / wall, 4),
        "measured_seconds": round(wall, 1),
        "join_leave_events_sent": events,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--redis", help="redis:// URL: measure RedisPresence instead of memory")
    p.add_argument("--bound", type=int, default=1000, help="presence_max_members")
    p.add_argument("--churn", type=int, default=0, metavar="N",
                   help="members that reconnect per minute during the measurement")
    p.add_argument("--no-memory", action="store_true",
                   help="skip tracemalloc (which slows the joins it measures)")
    args = p.parse_args()
    result = asyncio.run(measure(args.members, args.seconds, args.redis, args.bound,
                                 trace=not args.no_memory, churn=args.churn))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
