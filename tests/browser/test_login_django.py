"""docs/django.md's example end to end in Chromium: the page logs in with Django's own
LoginView form, opens a Staywire connection with no token and is identified as that user;
Django's logout then ends it at the next refresh, and the client's reconnect is refused.

One host for the cookie: the site on 127.0.0.1:A (runserver), Staywire on 127.0.0.1:B,
started with the example's staywire.toml (allowed_origins: the site's origin).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.support.django_project import EXAMPLE, DjangoProject
from tests.support.servers import ServerProcess, free_port

# The page's own record of every close its connection saw (the client's status events).
RECORD_CLOSES = """() => {
  window.closes = [];
  let last = staywire.status.lastClose;
  staywire.on('status', (s) => {
    if (s.lastClose && s.lastClose !== last) { last = s.lastClose; closes.push(s.lastClose.code); }
  });
}"""


@dataclass
class Site:
    project: DjangoProject
    ws_url: str
    start_staywire: Callable[[str], ServerProcess]  # the toml's text -> a running server


@pytest.fixture
def site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    ws_port = free_port()
    project = DjangoProject(tmp_path, STAYWIRE_CHECK_EVERY=0.5,
                            STAYWIRE_URL=f"ws://127.0.0.1:{ws_port}/ws")
    project.add_user("ann", "ann-pw")
    started: list[ServerProcess] = []

    def start_staywire(toml_text: str) -> ServerProcess:
        toml = tmp_path / "staywire.toml"
        toml.write_text(toml_text.replace("127.0.0.1:8000", f"127.0.0.1:{project.port}"))
        started.append(ServerProcess({"config": str(toml)}, ws_port))
        return started[-1].start()

    try:
        project.start()
        yield Site(project, f"ws://127.0.0.1:{ws_port}/ws", start_staywire)
    finally:
        project.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{request.node.name}-runserver.log").write_text(project.log())
        for srv in started:
            srv.kill()
            (ARTIFACTS / f"{request.node.name}-server.log").write_text(srv.log())
            srv.close()


def log_in(context: Any, site: Site) -> Any:
    """Django's LoginView, filled in and submitted as a person would; the page it leads to,
    once its socket is identified."""
    page = context.new_page()
    page.sockets = []  # type: ignore[attr-defined]
    page.on("websocket", lambda ws: page.sockets.append(ws.url))  # type: ignore[attr-defined]
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
    http = site.project.http
    page.goto(f"{http}/")
    page.click("text=Log in")
    page.fill("#id_username", "ann")
    page.fill("#id_password", "ann-pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{http}/")
    page.wait_for_function("document.getElementById('state').dataset.state === 'OPEN'")
    page.wait_for_function("document.getElementById('who').textContent.startsWith('identified')")
    assert page.inner_text("#who") == f"identified as ann (user {site.project.users['ann']})"
    return page


def test_django_login_identifies_the_socket_and_logout_ends_it(context: Any,
                                                               site: Site) -> None:
    site.start_staywire((EXAMPLE / "staywire.toml").read_text())
    page = log_in(context, site)
    assert page.sockets == [site.ws_url]  # no token in the URL: the cookie identified it
    page.evaluate(RECORD_CLOSES)

    # Log out with the page's own logout form, posted from the page so it stays open.
    page.evaluate("""async () => {
      const form = document.getElementById('logout');
      await fetch(form.action, {method: 'POST', body: new FormData(form)});
    }""")
    page.wait_for_function("staywire.state === 'CLOSED'", timeout=10_000)
    # 4401: the refresh saw no session. The client reconnects (its credentials are the
    # cookies), and Django's logout deleted the cookie: 4503, refused for good.
    assert page.evaluate("closes") == [4401, 4503]
    assert page.evaluate("staywire.status.lastClose.reason") == "log in first"
    assert page.errors == []


def test_without_refresh_a_live_session_reconnects_at_expiry(context: Any,
                                                            site: Site) -> None:
    """With connect_proxy_url alone, expire_at closes the socket with 4401 (docs/proxy.md);
    the browser client, holding no token, connects again and Django identifies it again."""
    toml = (EXAMPLE / "staywire.toml").read_text()
    site.start_staywire("\n".join(line for line in toml.splitlines()
                                  if not line.startswith("refresh_proxy_url")))
    page = log_in(context, site)
    page.evaluate(RECORD_CLOSES)
    page.wait_for_function("window.closes.length >= 1 && staywire.state === 'OPEN'"
                           " && staywire.status.connId !== null", timeout=10_000)
    assert page.evaluate("closes")[0] == 4401
    assert page.evaluate("staywire.status.lastClose.code") == 4401
    assert len(page.sockets) >= 2  # the reconnect resumes its session (?session=), no token
    assert all(url.startswith(site.ws_url) and "token" not in url for url in page.sockets)
    assert page.inner_text("#who") == f"identified as ann (user {site.project.users['ann']})"
    assert page.errors == []
