"""A real Redis Cluster for tests: three primaries, no replicas, on free loopback ports.

    with RedisClusterGroup() as cluster:
        cluster.url                 # redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/
        cluster.owner_of(b"key")    # the RedisServer that serves the key's slot now
        cluster.migrate_slot(slot, target)  # CLUSTER SETSLOT / MIGRATE, as resharding does

Every node is Debian's ``redis-server --cluster-enabled yes`` (tests/support/redis_server.py,
so nothing on disk but its nodes.conf and log in a temporary folder, stopped by PID);
``redis-cli --cluster create ... --cluster-yes`` splits the 16384 slots in three. Start
waits, under a deadline, until every node reports ``cluster_state:ok`` and agrees on
the slot map.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import pytest
import redis
from redis.crc import key_slot

from staywire_bench.ports import free_port
from tests.support.redis_server import REDIS_SERVER, TIMEOUT_FACTOR, RedisServer

__all__ = ["REDIS_CLI", "ClusterNodeServer", "RedisClusterGroup", "redis_cluster"]

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
# Short, so that a node that stops answering is failed (and the cluster says so) quickly.
_NODE_TIMEOUT_MS = "2000"


class ClusterNodeServer(RedisServer):
    """A ``redis-server --cluster-enabled yes``, with its cluster bus on a free port too.

    Redis puts the bus on port + 10000 by default: taken, or past 65535, for some of
    the ports the OS hands out. A new main port (a retry at start) gets a new bus port;
    a restart keeps both, as its nodes.conf says."""

    def __init__(self) -> None:
        super().__init__(extra=("--cluster-enabled", "yes",
                                "--cluster-node-timeout", _NODE_TIMEOUT_MS))
        self._bus: tuple[int, int] | None = None  # (main port, bus port)

    def argv(self) -> list[str]:
        if self._bus is None or self._bus[0] != self.port:
            self._bus = (self.port, free_port())
        return [*super().argv(), "--cluster-port", str(self._bus[1])]


class RedisClusterGroup:
    def __init__(self, primaries: int = 3) -> None:
        self.servers: list[RedisServer] = [ClusterNodeServer() for _ in range(primaries)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers) + "/"

    def client(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(port=server.port, socket_timeout=5 * TIMEOUT_FACTOR)

    def start(self) -> Self:
        try:
            for server in self.servers:
                server.start()
            made = subprocess.run([REDIS_CLI, "--cluster", "create",
                                   *(f"127.0.0.1:{s.port}" for s in self.servers),
                                   "--cluster-replicas", "0", "--cluster-yes"],
                                  capture_output=True, text=True, timeout=30 * TIMEOUT_FACTOR)
            if made.returncode:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{made.stdout}"
                                   f"{made.stderr}")
            self.wait_ok()
        except BaseException:
            self.close()
            raise
        return self

    def _node_ids(self) -> dict[int, str]:
        ids = {}
        for server in self.servers:
            with self.client(server) as c:
                ids[server.port] = c.execute_command("CLUSTER", "MYID").decode()
        return ids

    def slot_owners(self, server: RedisServer) -> dict[int, int]:
        """slot -> port of its primary, as ``server`` sees the map."""
        owners = {}
        with self.client(server) as c:
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                for slot in range(start, end + 1):
                    owners[slot] = int(primary[1])
        return owners

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every running node says ``cluster_state:ok`` and all agree on the map."""
        deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
        while True:
            try:
                live = [s for s in self.servers if s.running]
                states = []
                for server in live:
                    with self.client(server) as c:
                        states.append(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"))
                maps = [self.slot_owners(s) for s in live]
                if all(states) and len(maps[0]) == 16384 and all(m == maps[0] for m in maps):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok in time")
            time.sleep(0.05)

    def owner_of(self, key: str | bytes) -> RedisServer:
        port = self.slot_owners(self.servers[0])[key_slot(
            key.encode() if isinstance(key, str) else key)]
        return next(s for s in self.servers if s.port == port)

    def migrate_slot(self, slot: int, target: RedisServer, batch: int = 100) -> int:
        """Move ``slot`` to ``target`` while clients keep using it, the way
        ``redis-cli --cluster reshard`` does: IMPORTING/MIGRATING, MIGRATE the keys in
        batches, then SETSLOT NODE on both ends and the others. The keys moved."""
        source = next(s for s in self.servers if s.port == self.slot_owners(target)[slot])
        if source is target:
            return 0
        ids = self._node_ids()
        moved = 0
        with self.client(source) as src, self.client(target) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
            for _ in range(100_000):  # bounded: a slot holds a test's keys, not millions
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0,
                                    int(5000 * TIMEOUT_FACTOR), "REPLACE", "KEYS", *keys)
                moved += len(keys)
            dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
            src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
        for other in self.servers:
            if other is not source and other is not target:
                with self.client(other) as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
        self.wait_ok()
        return moved

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterGroup]:
    """One cluster for the session (about 4 s to form); tests keep apart by key prefix,
    and a test that moves a slot leaves the cluster whole (``cluster_state:ok``)."""
    if not (os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)):
        pytest.skip("redis-server and redis-cli are needed for a Redis Cluster")
    with RedisClusterGroup() as cluster:
        yield cluster
