"""Server-side subscriptions in Chromium, against a real ``staywire serve``.

The connect proxy (a small HTTP backend in a thread) subscribes every connection to
``user:42``; the page's client has it in ``serverSubscriptions`` and its publications
as ``publication`` events. The connection is cut while the backend refuses connects,
publications go on meanwhile, and when the backend is back the client recovers them,
once and in order, before a live one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import api_publish, open_demo, wait_for
from tests.support.servers import ServerProcess


class ConnectBackend:
    """Answers the connect proxy: user 42, subscribed to ``user:42``; 503 while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.asked = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                backend.asked += 1
                if backend.down:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"result": {"user": "42",
                                              "subscriptions": ["user:42"]}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/connect"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> ConnectBackend:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def backend() -> Iterator[ConnectBackend]:
    b = ConnectBackend().start()
    yield b
    b.stop()


OPEN_CLIENT = """async () => {
  const { Client, Backoff } = await import('/staywire.js');
  window.got = [];
  const c = new Client('/ws', { share: false, persist: false,
    backoff: new Backoff({ base: 50, cap: 200 }) });
  c.on('publication', (data, msg) => window.got.push([msg.channel, msg.offset, data]));
  window.c = c;
  await c.connect();
  return [...c.serverSubscriptions.entries()].map(([name, sub]) => [name, sub.serverSide]);
}"""


def test_publications_of_a_server_side_channel_and_their_recovery(
        context: Any, start_demo_server: Callable[..., ServerProcess], backend: ConnectBackend,
        tmp_path: Path) -> None:
    config = tmp_path / "staywire.toml"
    config.write_text(f'connect_proxy_url = "{backend.url}"\nproxy_timeout = 2\n')
    srv = start_demo_server(config=str(config))
    page = open_demo(context, srv)
    assert page.evaluate(OPEN_CLIENT) == [["user:42", True]]
    got = lambda: page.evaluate("window.got")  # noqa: E731
    api_publish(srv, "user:42", "one")
    wait_for(lambda: got() == [["user:42", 1, "one"]], 5, "the first publication")

    # Cut, and keep the client out (connect answers 503, so 1013) while two are published.
    backend.down = True
    asked = backend.asked
    page.evaluate("window.c._hub.socket.drop('test: cut', 4000)")
    wait_for(lambda: backend.asked > asked, 5, "a reconnect refused by the backend")
    api_publish(srv, "user:42", "two")
    api_publish(srv, "user:42", "three")
    backend.down = False
    wait_for(lambda: len(got()) == 3, 10, "the missed publications")
    api_publish(srv, "user:42", "four")
    wait_for(lambda: len(got()) == 4, 5, "a live one")
    assert [(offset, data) for _, offset, data in got()] == [
        (1, "one"), (2, "two"), (3, "three"), (4, "four")]
    assert page.errors == []
