"""The OpenAPI description cannot drift: from the structs, from the routes, from the client.

docs/openapi.json is the generator's output; the server serves the same; every path
it names is a route of a real server that decodes with that path's request struct
(an unknown field is refused by name), and no other ``/api/`` path is; every
operation is a method of both Python clients.
"""

from __future__ import annotations

import inspect
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import msgspec

from staywire.api import ApiClient, AsyncApiClient, Batch
from staywire.api import schema as s
from staywire.server.openapi import openapi, render
from tests.api.conftest import API_KEY

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def post(url: str, body: bytes, key: str | None = API_KEY, method: str = "POST"
         ) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_committed_description_is_the_generated_one() -> None:
    assert DOC.read_text() == render(), (
        "docs/openapi.json is stale: python -m staywire.server.openapi > docs/openapi.json")


def test_the_schemas_are_the_structs() -> None:
    doc = openapi()
    schemas = doc["components"]["schemas"]
    for name, method in s.METHODS.items():
        op = doc["paths"][f"/api/{name}"]["post"]
        request = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        reply = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert request.endswith("/" + method.request.__name__)
        assert reply.endswith("/" + method.reply.__name__)
        for struct in (method.request, method.reply):
            props = schemas[struct.__name__].get("properties", {})
            assert set(props) == set(struct.__struct_fields__), struct.__name__
        required = set(schemas[method.request.__name__].get("required", []))
        info = msgspec.inspect.type_info(method.request)
        assert required == {f.name for f in info.fields if f.required}


def test_every_path_is_a_route_and_no_other_is(api_server) -> None:
    doc = openapi()
    status, served = post(f"{api_server.api}/api/openapi.json", b"", None, method="GET")
    assert status == 200 and served == json.loads(json.dumps(doc))
    for path in doc["paths"]:
        if path == "/api/openapi.json":
            continue
        # The route decodes with its request struct: the unknown field is named.
        status, body = post(f"{api_server.api}{path}", b'{"surely_unknown": 1}')
        assert (status, body["error"]["code"]) == (400, "bad_request"), path
        assert "surely_unknown" in body["error"]["reason"], path
        assert set(doc["paths"][path]["post"]["responses"]) >= {"200", "400", "401"}
    status, body = post(f"{api_server.api}/api/subscribe_everyone", b"{}")
    assert (status, body["error"]["code"]) == (404, "unknown_method")


def test_both_clients_wrap_every_method() -> None:
    for name in s.METHODS:
        for client in (ApiClient, AsyncApiClient):
            assert callable(getattr(client, name)), (client, name)
        assert inspect.iscoroutinefunction(getattr(AsyncApiClient, name))
        if name != "batch":
            assert callable(getattr(Batch, name)), name


def test_bad_requests_get_codes_and_the_port_serves_on(api_server) -> None:
    api = f"{api_server.api}/api"
    cases = [
        (f"{api}/publish", b"{not json", API_KEY, 400, "bad_request"),
        (f"{api}/publish", b"[1, 2]", API_KEY, 400, "bad_request"),
        (f"{api}/publish", b'{"channel": "a"}', API_KEY, 400, "bad_request"),  # no data
        (f"{api}/info", b"{}", "wrong", 401, "unauthorized"),
        (f"{api}/info", b"{}", None, 401, "unauthorized"),
        (f"{api}/nope", b"{}", API_KEY, 404, "unknown_method"),
        (f"{api}/publish", b'{"channel": "a", "data": "' + b"x" * (1024 * 1024) + b'"}',
         API_KEY, 413, "bad_request"),
        (f"{api}/publish", b'{"channel": "a", "data": "' + b"x" * 70_000 + b'"}',
         API_KEY, 413, "bad_request"),  # over max_data_size
        (f"{api}/channels", b'{"pattern": "*?*"}', API_KEY, 400, "bad_request"),
        (f"{api}/channels", b'{"pattern": "a*", "limit": 100000}', API_KEY, 400,
         "bad_request"),
        (f"{api}/batch", b'{"commands": []}', API_KEY, 400, "bad_request"),
        (f"{api}/batch", b'{"commands": [' + b",".join([b'{"method": "info"}'] * 101) + b"]}",
         API_KEY, 400, "bad_request"),
        (f"{api}/refresh", b'{"user": ""}', API_KEY, 400, "bad_request"),
    ]
    for url, body, key, status, code in cases:
        got_status, got = post(url, body, key)
        assert (got_status, got["error"]["code"]) == (status, code), (url, body[:60])
        assert got["error"]["reason"]
    status, got = post(f"{api}/info", b"", method="GET")
    assert (status, got["error"]["code"]) == (405, "bad_request")
    status, nested = post(f"{api}/batch", b'{"commands": [{"method": "batch"}]}')
    assert status == 200 and nested["replies"][0]["error"]["code"] == "bad_request"
    assert post(f"{api}/info", b"{}")[0] == 200


def test_what_is_not_http_gets_a_400_and_the_port_serves_on(api_server) -> None:
    host, port = "127.0.0.1", int(api_server.api.rsplit(":", 1)[1])
    for junk, status in ((b"GARBAGE\r\n\r\n", b"400"),
                         (b"POST /api/info HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000, b"431")):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(junk)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
        assert b'"code":"bad_request"' in answer
    assert post(f"{api_server.api}/api/info", b"{}")[0] == 200
