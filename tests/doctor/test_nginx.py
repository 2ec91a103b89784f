"""nginx in front of Staywire: the generated config passes; without the Upgrade lines,
or with a 5 s proxy_read_timeout, the doctor names the problem and prints the fix."""

from __future__ import annotations

import pytest

from tests.conftest import ANON
from tests.deploy.test_nginx import strip_upgrade
from tests.doctor.support import checks, doctor
from tests.support.nginx import NGINX, start_nginx

pytestmark = [pytest.mark.nginx, pytest.mark.slow,
              pytest.mark.skipif(NGINX is None, reason="nginx is not installed")]


def test_generated_config_passes(server_factory) -> None:
    srv = server_factory(**ANON)
    with start_nginx([f"127.0.0.1:{srv.port}"]) as ngx:
        ngx.wait_ready()
        rc, doc, _ = doctor(ngx.url, "--compare-direct", srv.url)
    found = checks(doc)
    assert {i for i, c in found.items() if c["status"] in ("WARN", "FAIL")} == set(), found
    assert rc == 0
    # Direct and through nginx alike: the generated config changes no verdict.
    assert doc["compare"]["differences"] == []


def test_without_upgrade_lines_the_fix_is_printed(server_factory) -> None:
    srv = server_factory(**ANON)
    with start_nginx([f"127.0.0.1:{srv.port}"], config_filter=strip_upgrade) as ngx:
        ngx.wait_ready()
        rc, doc, _ = doctor(ngx.url, "--compare-direct", srv.url)
    assert rc == 2 and doc["connected"] is False
    assert doc["error"]["kind"] == "http"
    upgrade = checks(doc)["handshake.upgrade"]
    assert upgrade["status"] == "FAIL"
    assert "proxy_set_header Upgrade $http_upgrade;" in upgrade["fix"]
    assert "proxy_http_version 1.1;" in upgrade["fix"]
    [diff] = doc["compare"]["differences"]
    assert "does not pass the WebSocket upgrade" in diff["note"]


def short_read_timeout(config: str) -> str:
    import re

    return re.sub(r"proxy_read_timeout \d+s;", "proxy_read_timeout 5s;", config)


def test_short_proxy_read_timeout_is_named(server_factory) -> None:
    srv = server_factory(**ANON)
    with start_nginx([f"127.0.0.1:{srv.port}"], config_filter=short_read_timeout) as ngx:
        ngx.wait_ready()
        rc, doc, _ = doctor(ngx.url, "--slow", "--idle-timeout", "6", "--max-wait", "8",
                            "--compare-direct", srv.url)
    found = checks(doc)
    assert rc == 1
    idle = found["idle.survival"]
    assert idle["status"] == "FAIL" and "proxy_read_timeout 3600s;" in idle["fix"]
    assert 4.5 < idle["data"]["waited_s"] < 6.5
    interval = found["heartbeat.interval"]
    assert interval["status"] == "FAIL" and 4.5 < interval["data"]["cut_after_s"] < 6.5
    diffs = {d["id"]: d for d in doc["compare"]["differences"]}
    assert "idle.survival" in diffs and "proxy_read_timeout" in diffs["idle.survival"]["note"]
    assert doc["compare"]["direct"]["checks"][0]["status"] == "PASS"
