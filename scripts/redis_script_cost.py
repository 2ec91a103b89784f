"""Redis CPU per call of the publish script, and of each command inside it.

    .venv/bin/python scripts/redis_script_cost.py
    .venv/bin/python scripts/redis_script_cost.py --calls 100000 --variant exact-trim

Starts its own ``redis-server`` on a free loopback port (stopped by PID at the end),
loads ``PUBLISH_LUA`` (redis_publish.py), and runs it pipelined over 100 channels,
history kept and no idempotency key, as the bench's ``publish`` workload does. The
figure is Redis' own ``used_cpu_user + used_cpu_sys`` over the calls, beside
``INFO commandstats``' µs per call of ``evalsha`` and of the commands it makes. Batches
are large, so the per-batch cost (reads, writes, epoll) is small here; the bench, with
one publication in flight per connection, shows the cost with smaller batches.

A variant changes the script as a comparison: ``exact-trim`` (``MAXLEN`` without ``~``).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from staywire.brokers.redis_publish import PUBLISH_LUA
from staywire_bench.ports import free_port

VARIANTS = {
    "current": PUBLISH_LUA,
    "exact-trim": PUBLISH_LUA.replace("'MAXLEN', '~',", "'MAXLEN',"),
}


def _start(tmp: Path) -> tuple[subprocess.Popen[bytes], redis.Redis]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return proc, client
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


def _run(client: redis.Redis, sha: str, calls: int, pad: str) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(calls):
        ch = f"bench-pub-{i % 100}"
        pipe.evalsha(sha, 2, f"s:{{{ch}}}:meta", f"s:{{{ch}}}:stream", 100, 300_000,
                     3_000_000, f"s:pub:{ch}", ch, 120_000, 0,
                     f"{random.getrandbits(48):012x}", pad, "")
        if len(pipe) >= 200:
            pipe.execute()
    pipe.execute()


def _cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=60_000)
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    args = ap.parse_args()
    pad = '{"pad":"' + "x" * 100 + '"}'
    with tempfile.TemporaryDirectory() as tmp:
        proc, client = _start(Path(tmp))
        try:
            for name in args.variant or list(VARIANTS):
                client.flushall()
                sha = client.script_load(VARIANTS[name])
                _run(client, sha, args.calls // 3, pad)  # warm up: streams at their size
                client.config_resetstat()
                before = _cpu(client)
                _run(client, sha, args.calls, pad)
                per = 1e6 * (_cpu(client) - before) / args.calls
                stats = client.info("commandstats")
                inner = ", ".join(f"{k.removeprefix('cmdstat_')} {v['usec_per_call']:.2f}"
                                  for k, v in stats.items() if v["calls"] >= args.calls // 2)
                print(f"{name:12s} {per:6.2f} µs of Redis CPU per publish  (µs per call: {inner})")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
