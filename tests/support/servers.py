"""Start a real ``staywire serve`` process on a free loopback port, and stop it by PID.

    with start_server(allow_anonymous=True, anonymous_channels=["*"]) as srv:
        srv.url        # ws://127.0.0.1:PORT/ws
        srv.http       # http://127.0.0.1:PORT
        srv.api        # http://127.0.0.1:API_PORT (metrics, publish)
        srv.restart()  # same ports: clients can come back
        srv.log()      # everything the server logged so far

Options are the ``Config`` field names; lists become repeated flags, True a bare flag.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from staywire_bench.ports import free_port

__all__ = ["ServerProcess", "free_port", "metric", "start_server", "wait_http"]

# One knob scales every timeout in the suite on a slow machine (as websockets does).
TIMEOUT_FACTOR = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))

_LIST_FLAGS = {"allowed_origins": "--allowed-origin", "anonymous_channels": "--anonymous-channel"}


def wait_http(url: str, timeout: float = 10.0, expect: int = 200,
              alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until ``url`` answers ``expect``; stop early once ``alive()`` says the server died."""
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    last: object = None
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == expect:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == expect:
                return
            last = exc
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {expect} in time: {last}")


def metric(api: str, name: str, labels: str = "") -> float:
    """One sample of the server's /metrics, 0 when absent."""
    with urllib.request.urlopen(f"{api}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    key = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0


class ServerProcess:
    def __init__(self, options: dict[str, Any], port: int | None = None,
                 api_port: int | None = None) -> None:
        self.options = options
        self._fixed_ports = port is not None or api_port is not None
        self.port = port or free_port()
        self.api_port = api_port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="staywire-server-", suffix=".log",
                                                delete=False)
        self._set_ports(self.port, self.api_port)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "staywire", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--api-port", str(self.api_port)]
        for name, value in self.options.items():
            if value is None or value is False:
                continue
            if name in _LIST_FLAGS:
                for item in value:
                    argv += [_LIST_FLAGS[name], str(item)]
                continue
            flag = "--" + name.replace("_", "-")
            argv += [flag] if value is True else [flag, str(value)]
        return argv

    def start(self) -> ServerProcess:
        # STAYWIRE_* variables are server options; the suite's own knobs must not reach it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAYWIRE_TEST_")}
        env["PYTHONUNBUFFERED"] = "1"
        for attempt in range(3):  # bounded: a port taken by another process gets new ports
            self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
            try:
                # The API port is plain HTTP even when the WebSocket port speaks TLS.
                wait_http(f"{self.api}/healthz", timeout=15,
                          alive=lambda: self.proc is not None and self.proc.poll() is None)
            except TimeoutError:
                self.kill()
                if (self._fixed_ports or attempt == 2
                        or "address already in use" not in self.log()):
                    raise RuntimeError(f"server did not start:\n{self.log()}") from None
                self._set_ports(free_port(), free_port())
                continue
            self._fixed_ports = True  # restarts come back on the same ports
            return self
        raise AssertionError("unreachable")

    def _set_ports(self, port: int, api_port: int) -> None:
        self.port, self.api_port = port, api_port
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.http = f"http://127.0.0.1:{port}"
        self.api = f"http://127.0.0.1:{api_port}"

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout * TIMEOUT_FACTOR)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful drain), then SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self, *, graceful: bool = False) -> None:
        """Stop (SIGKILL unless graceful) and start again on the same ports."""
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start()

    def log(self) -> str:
        with open(self._log.name, "rb") as fh:
            return fh.read().decode(errors="replace")

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


@contextlib.contextmanager
def start_server(*, port: int | None = None, api_port: int | None = None,
                 **options: Any) -> Iterator[ServerProcess]:
    srv = ServerProcess(options, port, api_port)
    try:
        yield srv.start()
    finally:
        srv.close()
