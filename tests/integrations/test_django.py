"""docs/django.md's example project under real ``manage.py runserver`` with SQLite, and a
real Staywire server configured by the example's own staywire.toml.

Django's own login view sets the session cookie; a WebSocket with that cookie and no
token is identified as the user; without it (or with a dead session) it is refused
with 4503; after Django's logout the next refresh ends the socket.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from staywire.config import load_config
from staywire.server.app import Server
from tests.support.django_project import EXAMPLE, DjangoProject
from tests.support.ws import closed_with, connect, expect, request

T = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))
CHECK_EVERY = 0.5  # the session is asked again this often, so logout shows up fast


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoProject]:
    proj = DjangoProject(tmp_path_factory.mktemp("django"), STAYWIRE_CHECK_EVERY=CHECK_EVERY)
    proj.add_user("ann", "ann-pw")
    proj.add_user("bob", "bob-pw")
    proj.start()
    yield proj
    proj.stop()


def staywire_toml(project: DjangoProject, directory: Path) -> Path:
    """The example's staywire.toml, pointed at the port runserver got instead of 8000."""
    text = (EXAMPLE / "staywire.toml").read_text()
    assert "127.0.0.1:8000" in text
    path = directory / "staywire.toml"
    path.write_text(text.replace("127.0.0.1:8000", f"127.0.0.1:{project.port}"))
    return path


@pytest.fixture
async def staywire(project: DjangoProject, tmp_path: Path) -> AsyncIterator[str]:
    cfg = load_config(path=str(staywire_toml(project, tmp_path)), env={},
                      overrides={"port": 0, "api_port": 0, "close_timeout": 0.4,
                                 "drain_window": 0.1})
    server = Server(cfg)
    await server.start()
    yield f"ws://127.0.0.1:{server.port}/ws"
    await server.stop()


async def login(http: httpx.AsyncClient, username: str, password: str,
                cookie_name: str = "sessionid") -> str:
    """Django's LoginView, as a browser uses it: GET the form, POST it with its CSRF token.
    The ``Cookie`` header of the session it opened."""
    page = await http.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None, page.text
    resp = await http.post("/accounts/login/", data={
        "csrfmiddlewaretoken": token.group(1), "username": username, "password": password})
    assert resp.status_code == 302, resp.text  # to LOGIN_REDIRECT_URL
    return f"{cookie_name}={http.cookies[cookie_name]}"


async def logout(http: httpx.AsyncClient) -> None:
    resp = await http.post("/accounts/logout/",
                           headers={"X-CSRFToken": http.cookies["csrftoken"]})
    assert resp.status_code == 302, resp.text


def client(project: DjangoProject) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=project.http, trust_env=False, timeout=10 * T)


async def whoami(ws: object) -> dict[str, object]:
    reply = await request(ws, {"type": "rpc", "id": 99, "method": "whoami"})  # type: ignore[arg-type]
    assert reply["type"] == "result", reply
    return reply["data"]  # type: ignore[no-any-return]


async def test_the_session_cookie_identifies_the_socket(project: DjangoProject,
                                                        staywire: str) -> None:
    async with client(project) as http:
        ann = await login(http, "ann", "ann-pw")
        async with connect(staywire, additional_headers={"Cookie": ann}) as ws:
            await expect(ws, "welcome")
            me = await whoami(ws)
            assert me == {"id": project.users["ann"], "username": "ann"}  # id: str(user.pk)
    async with client(project) as http:
        bob = await login(http, "bob", "bob-pw")
        async with connect(staywire, additional_headers={"Cookie": bob}) as ws:
            await expect(ws, "welcome")
            assert await whoami(ws) == {"id": project.users["bob"], "username": "bob"}


@pytest.mark.parametrize("cookie", [
    None,  # no cookie at all
    "sessionid=no-such-session",  # a session the store does not hold
    "sessionid",  # not a cookie header a parser accepts
    "csrftoken=abc",  # cookies, but no session
])
async def test_no_session_is_refused_with_4503(staywire: str, cookie: str | None) -> None:
    headers = {"Cookie": cookie} if cookie is not None else {}
    async with connect(staywire, additional_headers=headers) as ws:
        assert await closed_with(ws) == (4503, "log in first")


async def test_an_expired_session_is_refused(project: DjangoProject, staywire: str) -> None:
    async with client(project) as http:
        cookie = await login(http, "ann", "ann-pw")
    key = cookie.split("=", 1)[1]
    project.shell("import datetime\nfrom django.contrib.sessions.models import Session\n"
                  "from django.utils import timezone\n"
                  f"Session.objects.filter(session_key={key!r}).update("
                  "expire_date=timezone.now() - datetime.timedelta(seconds=1))")
    async with connect(staywire, additional_headers={"Cookie": cookie}) as ws:
        assert await closed_with(ws) == (4503, "log in first")


async def test_logout_ends_the_open_socket_and_refuses_the_reconnect(
        project: DjangoProject, staywire: str) -> None:
    async with client(project) as http:
        cookie = await login(http, "ann", "ann-pw")
        async with connect(staywire, additional_headers={"Cookie": cookie}) as ws:
            welcome = await expect(ws, "welcome")
            assert welcome["expires_at"] is None  # refresh_proxy_url: the server renews it
            # Logged in, the refreshes go on and the socket stays: a refresh after the
            # first one is seen, and the socket still answers as ann.
            refreshes = project.log().count("POST /staywire/refresh")
            deadline = time.monotonic() + 5 * T
            while project.log().count("POST /staywire/refresh") < refreshes + 2:
                assert time.monotonic() < deadline, "no refresh in 5 s"
                await asyncio.sleep(0.05)
            assert (await whoami(ws))["username"] == "ann"
            started = time.monotonic()
            await logout(http)
            assert (await closed_with(ws))[0] == 4401  # the next refresh saw the logout
            assert time.monotonic() - started < 5 * T
        # Logged out, the old cookie's reconnect is refused by Django's session store.
        async with connect(staywire, additional_headers={"Cookie": cookie}) as ws:
            assert await closed_with(ws) == (4503, "log in first")


async def test_subscribe_publish_and_rpc_allow_and_refuse(project: DjangoProject,
                                                          staywire: str) -> None:
    async with client(project) as http:
        cookie = await login(http, "ann", "ann-pw")
    async with connect(staywire, additional_headers={"Cookie": cookie}) as ws:
        await expect(ws, "welcome")
        assert (await request(ws, {"type": "sub", "id": 1, "channel": "room:ann"}))[
            "type"] == "ack"
        denied = await request(ws, {"type": "sub", "id": 2, "channel": "room:bob"})
        assert (denied["type"], denied["code"], denied["reason"]) == (
            "error", "forbidden", "not your room")
        # Allowed, with the data Django put in its place: who said it, from the session.
        ack = await request(ws, {"type": "pub", "id": 3, "channel": "room:ann",
                                 "data": {"text": "hi", "from": "mallory"}})
        assert ack["type"] == "ack", ack
        msg = await expect(ws, "msg")
        assert msg["data"] == {"text": "hi", "from": "ann"}
        refused = await request(ws, {"type": "pub", "id": 4, "channel": "room:ann",
                                     "data": {"text": " "}})
        assert (refused["type"], refused["code"]) == ("error", "invalid_params")
        unknown = await request(ws, {"type": "rpc", "id": 5, "method": "nope"})
        assert (unknown["type"], unknown["code"], unknown["reason"]) == (
            "error", "unknown_method", "nope")


async def test_the_session_engine_and_cookie_name_are_the_settings(tmp_path: Path) -> None:
    """Another SESSION_ENGINE (the session in a signed cookie, no database row) under
    another SESSION_COOKIE_NAME: the views read both from the settings."""
    project = DjangoProject(tmp_path, STAYWIRE_CHECK_EVERY=CHECK_EVERY,
                            SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
                            SESSION_COOKIE_NAME="app_session")
    pk = project.add_user("ann", "ann-pw")
    project.start()
    cfg = load_config(path=str(staywire_toml(project, tmp_path)), env={},
                      overrides={"port": 0, "api_port": 0, "close_timeout": 0.4})
    server = Server(cfg)
    await server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with client(project) as http:
            cookie = await login(http, "ann", "ann-pw", cookie_name="app_session")
        async with connect(url, additional_headers={"Cookie": cookie}) as ws:
            await expect(ws, "welcome")
            assert await whoami(ws) == {"id": pk, "username": "ann"}
        # The default name carries nothing here, and a cookie whose signature fails is
        # no session at all.
        value = cookie.split("=", 1)[1]
        for forged in (f"sessionid={value}", f"app_session={value[:-2]}xx"):
            async with connect(url, additional_headers={"Cookie": forged}) as ws:
                assert await closed_with(ws) == (4503, "log in first")
    finally:
        await server.stop()
        project.stop()


def session_exists(project: DjangoProject, cookie: str) -> bool:
    key = cookie.split("=", 1)[1]
    out = project.shell("from django.contrib.sessions.models import Session\n"
                        f"print(Session.objects.filter(session_key={key!r}).exists())")
    return out.split()[-1] == "True"


async def test_a_changed_password_ends_the_session(project: DjangoProject,
                                                   staywire: str) -> None:
    project.add_user("carol", "carol-pw")
    async with client(project) as http:
        cookie = await login(http, "carol", "carol-pw")
    project.shell("from django.contrib.auth import get_user_model\n"
                  "u = get_user_model().objects.get(username='carol')\n"
                  "u.set_password('new-pw')\nu.save()")
    async with connect(staywire, additional_headers={"Cookie": cookie}) as ws:
        assert await closed_with(ws) == (4503, "log in first")


async def test_a_rotated_secret_key_keeps_the_browsers_session(tmp_path: Path) -> None:
    """With SECRET_KEY rotated (the old one in SECRET_KEY_FALLBACKS), Django's get_user
    moves a session to a new key: the browser then gets the new cookie. A proxy call
    cannot hand the browser a cookie, so the views read the session and never write it:
    the user stays identified, and stays logged in to the site."""
    project = DjangoProject(tmp_path, STAYWIRE_CHECK_EVERY=CHECK_EVERY, SECRET_KEY="old-key")
    project.add_user("ann", "ann-pw")
    project.start()
    try:
        async with client(project) as http:
            cookie = await login(http, "ann", "ann-pw")
        project.configure(SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=["old-key"])
        project.restart()
        body = {"client": "c", "ip": "127.0.0.1", "headers": {"Cookie": cookie}}
        async with client(project) as http:
            for _ in range(2):  # a session cycled by the first call would fail the second
                answer = (await http.post("/staywire/connect", json=body)).json()
                assert answer["result"]["user"] == project.users["ann"], answer
        assert session_exists(project, cookie)
        # The site itself still knows the browser: its page says who is logged in.
        async with client(project) as http:
            http.cookies.set("sessionid", cookie.split("=", 1)[1])
            assert "Logged in as <b>ann</b>" in (await http.get("/")).text
    finally:
        project.stop()


async def test_the_views_take_only_proxy_posts(project: DjangoProject) -> None:
    async with client(project) as http:
        assert (await http.get("/staywire/connect")).status_code == 405
        bad = await http.post("/staywire/connect", content=b"{not json")
        assert bad.status_code == 400
        off_contract = await http.post("/staywire/subscribe", json={"client": 1})
        assert off_contract.status_code == 400 and "client" in off_contract.text
        # No CSRF token, as Staywire sends none: the views are csrf_exempt.
        ok = await http.post("/staywire/rpc", json={
            "client": "c", "ip": "127.0.0.1", "headers": {}, "user": "", "method": "whoami",
            "data": None})
        assert ok.status_code == 200
        assert ok.json() == {"result": {"data": {"id": "", "username": ""}}}


def test_the_docs_show_the_example_files() -> None:
    """docs/django.md shows each file of the example as it is: the tests above run those."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "django.md").read_text()
    shown = dict(re.findall(r"`examples/django/([^`]+)`:\n\n```\w*\n(.*?)```", doc, re.S))
    files = {str(p.relative_to(EXAMPLE)) for p in EXAMPLE.rglob("*")
             if p.is_file() and p.name not in ("manage.py", "__init__.py")
             and "__pycache__" not in p.parts}
    assert set(shown) == files
    for name, text in shown.items():
        assert text == (EXAMPLE / name).read_text(), f"docs/django.md shows an old {name}"
