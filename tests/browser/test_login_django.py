"""docs/django.md's example end to end in Chromium: the page logs in with Django's own
LoginView form, opens a Staywire connection with no token and is identified as that user;
Django's logout then ends it at the next refresh, and a new connection is refused.

One host for the cookie: the site on 127.0.0.1:A (runserver), Staywire on 127.0.0.1:B,
started with the example's staywire.toml (allowed_origins: the site's origin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_django_login_identifies_the_socket_and_logout_ends_it(
        context: Any, tmp_path: Path, request: Any) -> None:
    ws_port = free_port()
    project = DjangoProject(tmp_path, STAYWIRE_CHECK_EVERY=0.5,
                            STAYWIRE_URL=f"ws://127.0.0.1:{ws_port}/ws")
    pk = project.add_user("ann", "ann-pw")
    toml = tmp_path / "staywire.toml"
    toml.write_text((EXAMPLE / "staywire.toml").read_text().replace(
        "127.0.0.1:8000", f"127.0.0.1:{project.port}"))
    staywire = ServerProcess({"config": str(toml)}, ws_port)
    try:
        project.start()
        staywire.start()
        page = context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        # Django's LoginView, filled in and submitted as a person would.
        page.goto(f"{project.http}/")
        page.click("text=Log in")
        page.fill("#id_username", "ann")
        page.fill("#id_password", "ann-pw")
        page.click("button[type=submit]")
        page.wait_for_url(f"{project.http}/")

        page.wait_for_function("document.getElementById('state').dataset.state === 'OPEN'")
        page.wait_for_function(
            "document.getElementById('who').textContent.startsWith('identified')")
        assert page.inner_text("#who") == f"identified as ann (user {pk})"
        assert sockets == [f"ws://127.0.0.1:{ws_port}/ws"]  # no token in the URL: the cookie
        page.evaluate(RECORD_CLOSES)

        # Log out with the page's own logout form, posted from the page so it stays open.
        page.evaluate("""async () => {
          const form = document.getElementById('logout');
          await fetch(form.action, {method: 'POST', body: new FormData(form)});
        }""")
        page.wait_for_function("staywire.state === 'CLOSED'", timeout=10_000)
        # 4401: the refresh saw no session. The client holds no token it could renew, so
        # it stops there (docs/client-browser.md).
        assert page.evaluate("closes") == [4401]
        # A new connection from the page (as after a reload) has no session cookie any
        # more (Django's logout deleted it) and is refused for good.
        refused = page.evaluate("""async (url) => {
          const { Client } = await import('/static/staywire/staywire.js');
          const client = new Client(url, { share: false, persist: false });
          try { await client.connect(); return 'connected'; }
          catch (err) { return client.status.lastClose; }
        }""", f"ws://127.0.0.1:{ws_port}/ws")
        assert refused == {"code": 4503, "reason": "log in first"}
        assert errors == []
    finally:
        staywire.kill()
        project.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{request.node.name}-server.log").write_text(staywire.log())
        (ARTIFACTS / f"{request.node.name}-runserver.log").write_text(project.log())
        staywire.close()
