"""A real Sentinel deployment for tests: one primary, replicas (one), three sentinels.

    with SentinelGroup() as group:
        group.url            # redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0
        group.primary.stop() # SIGKILL by PID: the sentinels promote the replica
        group.wait_failover()

With ``SentinelGroup(replicas=2)`` one replica is left after a failover (the sentinels
point it at the promoted one): what a ``WAIT 1`` deployment needs to stay writable.
``kill_primary()`` kills whichever server is the primary now, so one group can go
through several failovers.

Every process is Debian's ``redis-server`` (``--sentinel`` for the sentinels), on
127.0.0.1 and free ports, nothing on disk but each one's config and log in a temporary
folder; each is stopped by its PID. The failure detection is fast
(``down-after-milliseconds`` 500 ms, quorum 2 of 3) so that a failover takes a
couple of seconds, not the 30 s of Sentinel's defaults.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Self

import redis

from staywire_bench.ports import free_port
from tests.support.redis_server import REDIS_SERVER, TIMEOUT_FACTOR, RedisServer

__all__ = ["MASTER", "SentinelGroup", "SentinelProcess", "wait_replicating"]

MASTER = "mymaster"
# A full sync starts at once, not after Redis' default 5 s of waiting for more replicas
# (every server: after a failover a replica may have to sync from the promoted one).
_NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


def _command(port: int, *args: str, timeout: float = 0.5) -> bytes:
    """One inline command to 127.0.0.1:port; the raw reply (b"" if none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall((" ".join(args) + "\r\n").encode())
            return s.recv(4096)
    except OSError:
        return b""


def wait_replicating(primary_port: int, count: int, timeout: float = 10.0) -> None:
    """Until WAIT sees a write on ``count`` replicas of the primary at ``primary_port``.

    Online is not enough: after a diskless full sync Redis 7 streams writes to a replica
    only from its first ACK, up to a second later. And the write counts only when made
    with the replicas attached: WAIT waits for the replication offset of the client's
    last write, which stays 0 for a write that was never propagated."""
    client = redis.Redis(port=primary_port, socket_timeout=1)
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    try:
        while True:
            with contextlib.suppress(redis.RedisError):
                info = client.info("replication")
                online = sum(1 for key, value in info.items()
                             if key.startswith("slave") and isinstance(value, dict)
                             and value.get("state") == "online")
                if online >= count and client.incr("staywire-test:sync") and \
                        client.wait(count, 100) >= count:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} replica(s) of :{primary_port} are not replicating")
            time.sleep(0.02)
    finally:
        client.close()


class SentinelProcess:
    def __init__(self, primary_port: int, *, down_after_ms: int = 500,
                 failover_timeout_ms: int = 3000) -> None:
        self.primary_port = primary_port
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="staywire-sentinel-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> str:
        path = os.path.join(self._dir, "sentinel.conf")  # Sentinel rewrites it: its own copy
        with open(path, "w") as fh:
            fh.write(f"bind 127.0.0.1\nport {self.port}\ndir {self._dir}\n"
                     f"logfile {os.path.join(self._dir, 'sentinel.log')}\n"
                     f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2\n"
                     f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                     f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
                     f"sentinel parallel-syncs {MASTER} 1\n")
        return path

    def start(self, timeout: float = 5.0) -> Self:
        for _ in range(3):
            self._proc = subprocess.Popen([REDIS_SERVER, self._write_config(), "--sentinel"],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
            while time.monotonic() < deadline and self.running:
                if _command(self.port, "PING").startswith(b"+PONG"):
                    return self
                time.sleep(0.01)
            self.stop()
            self.port = free_port()  # most likely the port was taken: another one
        raise RuntimeError(f"redis sentinel did not start:\n{self.log()}")

    def primary(self) -> int | None:
        """The port of the primary this sentinel names now."""
        reply = _command(self.port, "SENTINEL", "get-master-addr-by-name", MASTER)
        lines = reply.split(b"\r\n")
        # *2 $9 127.0.0.1 $4 6379
        return int(lines[4]) if len(lines) > 4 and lines[4].isdigit() else None

    def stop(self) -> None:
        if self.running:
            os.kill(self.pid, signal.SIGKILL)
            assert self._proc is not None
            self._proc.wait(timeout=5 * TIMEOUT_FACTOR)

    def log(self) -> str:
        with contextlib.suppress(OSError), \
                open(os.path.join(self._dir, "sentinel.log"), "rb") as fh:
            return fh.read().decode(errors="replace")
        return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class SentinelGroup:
    def __init__(self, sentinels: int = 3, replicas: int = 1) -> None:
        self.primary = RedisServer(extra=_NO_SYNC_DELAY)
        self.replicas: list[RedisServer] = []
        self.sentinels: list[SentinelProcess] = []
        self._count = sentinels
        self._replica_count = replicas

    @property
    def replica(self) -> RedisServer | None:
        return self.replicas[0] if self.replicas else None

    def servers(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self) -> Self:
        try:
            self.primary.start()
            for _ in range(self._replica_count):
                self.replicas.append(RedisServer(extra=(
                    *_NO_SYNC_DELAY, "--replicaof", "127.0.0.1", str(self.primary.port))).start())
            self._wait(lambda: all(b"master_link_status:up" in _command(
                r.port, "INFO", "replication") for r in self.replicas), "the replicas to sync")
            for _ in range(self._count):
                self.sentinels.append(SentinelProcess(self.primary.port).start())
            # Every sentinel has found the replica and the other sentinels: a failover
            # needs the quorum to agree, and a replica to promote.
            self._wait(self._all_see_each_other, "the sentinels to discover each other")
            wait_replicating(self.primary.port, self._replica_count)
        except BaseException:
            self.close()
            raise
        return self

    def _all_see_each_other(self) -> bool:
        for s in self.sentinels:
            reply = _command(s.port, "SENTINEL", "master", MASTER)
            fields = reply.split(b"\r\n")
            values = dict(zip(fields[2::4], fields[4::4], strict=False))
            if values.get(b"num-other-sentinels") != str(self._count - 1).encode() or \
                    values.get(b"num-slaves") != str(self._replica_count).encode():
                return False
        return True

    def current_primary(self) -> int | None:
        """The primary's port that a majority of the sentinels name now."""
        votes = [s.primary() for s in self.sentinels if s.running]
        for port in set(votes):
            if port is not None and votes.count(port) * 2 > len(self.sentinels):
                return port
        return None

    def wait_failover(self, timeout: float = 20.0) -> int:
        """After the primary was stopped: wait until the sentinels name a live replica
        that took the role; its port."""
        live = {s.port for s in self.servers() if s.running}
        promoted: list[int] = []

        def done() -> bool:
            port = self.current_primary()
            if port in live and b"role:master" in _command(port, "INFO", "replication"):
                promoted.append(port)
                return True
            return False

        self._wait(done, "the sentinels to promote a replica", timeout)
        return promoted[0]

    def primary_server(self) -> RedisServer:
        """The running server the sentinels name as primary now."""
        port = self.current_primary()
        for server in self.servers():
            if server.port == port and server.running:
                return server
        raise RuntimeError(f"no running server is the primary the sentinels name ({port})")

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary (by PID); the server killed."""
        server = self.primary_server()
        server.stop()
        return server

    def wait_failover_ready(self, timeout: float = 15.0) -> None:
        """Until every live sentinel knows a healthy replica of the current primary: one
        it could promote (after a failover, the replica re-pointed at the new primary)."""
        def ready() -> bool:
            for s in self.sentinels:
                if not s.running:
                    continue
                client = redis.Redis(port=s.port, socket_timeout=1)
                try:
                    replicas = client.sentinel_slaves(MASTER)
                except redis.RedisError:
                    return False
                finally:
                    client.close()
                if not any(not r["is_sdown"] and r.get("master-link-status") == "ok"
                           for r in replicas):
                    return False
            return True
        self._wait(ready, "the sentinels to know a replica they could promote", timeout)

    def wait_replicating(self, count: int, timeout: float = 15.0) -> None:
        """Until the current primary's writes reach ``count`` replicas (see below)."""
        wait_replicating(self.primary_server().port, count, timeout)

    @staticmethod
    def _wait(done: object, what: str, timeout: float = 15.0) -> None:
        assert callable(done)
        deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")

    def close(self) -> None:
        for s in self.sentinels:
            s.close()
        for replica in self.replicas:
            replica.close()
        self.primary.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
