"""Start a real nginx with a config from `staywire nginx` on a free loopback port;
stop it by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from tests.support.servers import free_port, wait_http

__all__ = ["NGINX", "NginxProcess", "generate", "start_nginx"]

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def generate(backends: list[str], listen: str, runtime_dir: str, *extra: str) -> str:
    argv = [sys.executable, "-m", "staywire", "nginx", "--listen", listen,
            "--runtime-dir", runtime_dir, *extra]
    for b in backends:
        argv += ["--backend", b]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class NginxProcess:
    def __init__(self, config: str, port: int, runtime_dir: str) -> None:
        self.port = port
        self.dir = runtime_dir
        self.conf = os.path.join(runtime_dir, "nginx.conf")
        with open(self.conf, "w") as fh:
            fh.write(config)
        assert NGINX is not None, "nginx is not installed (make test installs it)"
        self.proc = subprocess.Popen([NGINX, "-c", self.conf, "-p", runtime_dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.http = f"http://127.0.0.1:{port}"

    def wait_ready(self, path: str = "/healthz", expect: int = 200) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                wait_http(self.http + path, timeout=0.5, expect=expect)
                return
            except TimeoutError:
                continue
        raise TimeoutError("nginx did not come up")

    def access_log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            with open(os.path.join(self.dir, "access.log")) as fh:
                return fh.read()
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGQUIT)  # graceful: finish requests
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@contextlib.contextmanager
def start_nginx(backends: list[str], *extra: str, config_filter=None) -> Iterator[NginxProcess]:
    port = free_port()
    runtime = tempfile.mkdtemp(prefix="staywire-nginx-")
    config = generate(backends, f"127.0.0.1:{port}", runtime, *extra)
    if config_filter is not None:
        config = config_filter(config)
    proc = NginxProcess(config, port, runtime)
    try:
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(runtime, ignore_errors=True)
