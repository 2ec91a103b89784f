"""A real Sentinel deployment for tests: one primary, one replica, three sentinels.

    with SentinelGroup() as group:
        group.url            # redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0
        group.primary.stop() # SIGKILL by PID: the sentinels promote the replica
        group.wait_failover()

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

from staywire_bench.ports import free_port
from tests.support.redis_server import REDIS_SERVER, TIMEOUT_FACTOR, RedisServer

__all__ = ["MASTER", "SentinelGroup", "SentinelProcess"]

MASTER = "mymaster"


def _command(port: int, *args: str, timeout: float = 0.5) -> bytes:
    """One inline command to 127.0.0.1:port; the raw reply (b"" if none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall((" ".join(args) + "\r\n").encode())
            return s.recv(4096)
    except OSError:
        return b""


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
    def __init__(self, sentinels: int = 3) -> None:
        self.primary = RedisServer()
        self.replica: RedisServer | None = None
        self.sentinels: list[SentinelProcess] = []
        self._count = sentinels

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self) -> Self:
        try:
            self.primary.start()
            self.replica = RedisServer(extra=("--replicaof", "127.0.0.1",
                                              str(self.primary.port))).start()
            self._wait(lambda: b"master_link_status:up" in _command(
                self.replica.port if self.replica else 0, "INFO", "replication"),
                "the replica to sync")
            for _ in range(self._count):
                self.sentinels.append(SentinelProcess(self.primary.port).start())
            # Every sentinel has found the replica and the other sentinels: a failover
            # needs the quorum to agree, and a replica to promote.
            self._wait(self._all_see_each_other, "the sentinels to discover each other")
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
                    values.get(b"num-slaves") != b"1":
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
        """After the primary was stopped: wait until the sentinels name the replica."""
        assert self.replica is not None
        replica = self.replica.port
        self._wait(lambda: self.current_primary() == replica
                   and b"role:master" in _command(replica, "INFO", "replication"),
                   "the sentinels to promote the replica", timeout)
        return replica

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
        if self.replica is not None:
            self.replica.close()
        self.primary.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
