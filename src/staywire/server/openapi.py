"""The OpenAPI 3.1 description of the server API, generated from its request and reply structs.

Served at ``GET /api/openapi.json`` and committed as docs/openapi.json; a test fails when
the file differs from this output (regenerate it with
``python -m staywire.server.openapi > docs/openapi.json``), and another sends every path
to a real server, so the description can drift from neither the structs nor the routes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgspec

from staywire import __version__
from staywire.api import schema as s
from staywire.protocol.codes import ErrorCode

__all__ = ["ERROR_STATUSES", "openapi", "render"]

# What each failing status means; the body is always an ErrorReply.
ERROR_STATUSES = {
    "400": "bad_request: not JSON, unknown fields, wrong types or values",
    "401": "unauthorized: a missing or wrong API key",
    "403": "forbidden: the server has no api_key, the API is off",
    "404": "unknown_method",
    "413": "bad_request: a body over 1 MiB, or data over max_data_size",
    "503": "unavailable: the broker cannot be reached (nothing was done)",
}


def _ecma(pattern: str) -> str:
    # Python's end of text \Z is ECMA-262's $ (JSON Schema patterns are ECMA regexes).
    return pattern[:-2] + "$" if pattern.endswith("\\Z") else pattern


def _fix_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _ecma(v) if k == "pattern" and isinstance(v, str) else _fix_patterns(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_patterns(v) for v in node]
    return node


def _json(body: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": body}}


def openapi() -> dict[str, Any]:
    types: list[Any] = [s.ErrorReply]
    for method in s.METHODS.values():
        types += [method.request, method.reply]
    refs, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}")
    components = _fix_patterns(components)
    components["Error"]["properties"]["code"]["enum"] = [c.value for c in ErrorCode]
    error_ref = refs[0]
    paths: dict[str, Any] = {}
    for i, (name, method) in enumerate(s.METHODS.items()):
        request_ref, reply_ref = refs[1 + 2 * i], refs[2 + 2 * i]
        responses: dict[str, Any] = {"200": {"description": "the method's reply",
                                             "content": _json(reply_ref)}}
        for status, why in ERROR_STATUSES.items():
            responses[status] = {"description": why, "content": _json(error_ref)}
        paths[f"/api/{name}"] = {"post": {
            "operationId": name,
            "summary": method.summary,
            "requestBody": {"required": True, "content": _json(request_ref)},
            "responses": responses,
        }}
    # Binary data (docs/api.md): the body is the bytes, the channel and key are parameters.
    publish = paths["/api/publish"]["post"]
    publish["requestBody"]["content"]["application/octet-stream"] = {
        "schema": {"type": "string", "format": "binary"}}
    publish["parameters"] = [
        {"name": name, "in": where, "required": False, "schema": {"type": "string"},
         "description": f"with application/octet-stream: the {what}{also}"}
        for name, where, what, also in (
            ("channel", "query", "channel", " (or the Staywire-Channel header)"),
            ("key", "query", "idempotency key", " (or the Staywire-Key header)"),
            ("Staywire-Channel", "header", "channel", ", when not in the query"),
            ("Staywire-Key", "header", "idempotency key", ", when not in the query"))]
    paths["/api/openapi.json"] = {"get": {
        "operationId": "openapi",
        "summary": "This description",
        "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1", "content": _json({})}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Staywire server API", "version": __version__,
                 "description": "On the internal API port (api_port). See docs/api.md."},
        "servers": [{"url": "http://127.0.0.1:9765"}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "the server's api_key"}},
            "schemas": components,
        },
    }


def render() -> str:
    return json.dumps(openapi(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
