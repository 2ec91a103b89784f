"""What cannot be checked gets one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

from staywire_bench.ports import free_port

from staywire.doctor.model import Check, Status
from staywire.doctor.runner import _guard
from tests.doctor.support import doctor


def run_plain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "staywire", "doctor", *args],
                          capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def http_server(status: int, headers: dict[str, str]) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_refused_connection() -> None:
    port = free_port()
    rc, doc, _ = doctor(f"ws://127.0.0.1:{port}/ws")
    assert rc == 2 and doc["error"]["kind"] == "refused"
    assert doc["error"]["message"] == f"connection refused by 127.0.0.1:{port}: nothing " \
                                      "listens there"
    out = run_plain(f"ws://127.0.0.1:{port}/ws")
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr
    assert "cannot open a WebSocket: connection refused" in out.stdout


def test_plain_http_server() -> None:
    with http_server(200, {"Content-Type": "text/html"}) as port:
        rc, doc, _ = doctor(f"ws://127.0.0.1:{port}/")
    assert rc == 2 and doc["error"]["kind"] == "http"
    assert "HTTP 200" in doc["error"]["message"] and "not a WebSocket endpoint" in \
        doc["error"]["message"]


def test_redirect() -> None:
    with http_server(301, {"Location": "wss://elsewhere.test/ws"}) as port:
        rc, doc, _ = doctor(f"ws://127.0.0.1:{port}/")
    assert rc == 2 and doc["error"]["kind"] == "redirect"
    assert "wss://elsewhere.test/ws" in doc["error"]["message"]


def test_tls_to_a_plain_server() -> None:
    with http_server(200, {}) as port:
        rc, doc, _ = doctor(f"wss://127.0.0.1:{port}/")
    assert rc == 2 and doc["error"]["kind"] == "tls"
    assert doc["error"]["message"].startswith(f"TLS handshake with 127.0.0.1:{port} failed")


def test_not_an_http_server() -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        rc, doc, _ = doctor(f"ws://127.0.0.1:{port}/")
    finally:
        listener.close()
    assert rc == 2 and doc["error"]["kind"] == "not_http"


def test_bad_arguments() -> None:
    for args, text in ((["http://127.0.0.1/ws"], "give ws:// or wss://"),
                       (["ftp://x/"], "not a ws:// or wss:// URL"),
                       (["ws://127.0.0.1/", "--max-probe-size", "1GiB"], "--max-probe-size"),
                       (["ws://127.0.0.1/", "--app-pong", "x"], "--app-pong needs --app-ping")):
        out = run_plain(*args)
        assert out.returncode == 2 and text in out.stderr and "Traceback" not in out.stderr


def test_an_error_inside_a_check_is_its_skip_line_not_a_traceback() -> None:
    async def broken() -> list[Check]:
        raise KeyError("no such field")

    [check] = asyncio.run(_guard("limits.max_message", "Message limits", broken()))
    assert check.id == "limits.max_message" and check.status is Status.SKIP
    assert "KeyError" in check.saw and "no such field" in check.saw
    assert check.data["error"].startswith("KeyError")
