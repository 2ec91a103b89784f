"""A real ``redis-server`` for tests: on 127.0.0.1, on a free port, nothing on disk.

    with RedisServer() as server:
        server.url        # redis://127.0.0.1:PORT/0
        server.stop()     # SIGKILL by PID: what a crash looks like to a client
        server.start()    # same port, and (no RDB, no AOF) every key is gone

A real server rather than a fake, because what the broker must get right is the
behaviour of the real thing: Lua atomicity, pub/sub delivery, sockets closing
under a client, keys lost on restart.
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
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import pytest

from staywire_bench.ports import free_port

__all__ = ["REDIS_SERVER", "RedisServer", "fresh_redis_server", "redis_server"]

REDIS_SERVER = "/usr/bin/redis-server"

# The knob the rest of the suite uses to scale timeouts on a slow machine.
TIMEOUT_FACTOR = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; start/stop/restart keep the same port."""

    def __init__(self, port: int | None = None, *, binary: str = REDIS_SERVER,
                 extra: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.extra = extra  # more arguments, e.g. ("--replicaof", "127.0.0.1", "6379")
        self._fixed_port = port is not None
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="staywire-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--logfile",
            os.path.join(self._dir, "redis.log"),
            *self.extra,
        ]

    def start(self, timeout: float = 5.0) -> Self:
        """Start and wait until it answers PING; a taken port is retried on another one
        unless the port was chosen by the caller (or is being reused by a restart)."""
        if self.running:
            return self
        for _ in range(3):
            self._proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready(timeout * TIMEOUT_FACTOR):
                self._fixed_port = True  # restarts come back on this port
                return self
            self.stop()
            if self._fixed_port:
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False  # exited: most likely the port was taken
            if _answers_ping(self.port):
                return True
            time.sleep(0.01)
        return False

    def stop(self, *, graceful: bool = False) -> None:
        """Stop by PID: SIGKILL by default (a crash), SIGTERM when ``graceful``."""
        if not self.running:
            return
        os.kill(self.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        if graceful:
            self.resume()  # a paused process would not see the SIGTERM
        assert self._proc is not None
        try:
            self._proc.wait(timeout=5 * TIMEOUT_FACTOR)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self._proc.wait(timeout=5 * TIMEOUT_FACTOR)

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the process stays, its sockets stay open, and nothing answers.

        What a network partition looks like to a client: no FIN, no RST, silence."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def log(self) -> str:
        with contextlib.suppress(OSError), open(os.path.join(self._dir, "redis.log"), "rb") as fh:
            return fh.read().decode(errors="replace")
        return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _require_binary() -> None:
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"{REDIS_SERVER} is not installed")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server for the session; tests keep apart by key prefix. Never stop it."""
    _require_binary()
    with RedisServer() as server:
        yield server


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    """A server of this test's own, free to be stopped and restarted."""
    _require_binary()
    with RedisServer() as server:
        yield server
