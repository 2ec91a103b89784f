"""A token in the URL's query string ends up in access logs (the proxy's, the load
balancer's, the server's): a WARN, with the log line that keeps it out."""

from __future__ import annotations

import re

from staywire.doctor.context import Context
from staywire.doctor.fixes import NGINX_QUERY_LOG
from staywire.doctor.model import Check, Status

__all__ = ["check_query_tokens", "token_like"]

_NAMES = {"token", "access_token", "auth", "auth_token", "authorization", "jwt", "apikey",
          "api_key", "key", "password", "pass", "passwd", "secret", "sig", "signature",
          "id_token", "bearer", "ticket", "credential", "credentials", "sessionid",
          "session_token"}
_JWT = re.compile(r"^eyJ[\w-]+\.[\w-]+\.[\w-]*$")
_OPAQUE = re.compile(r"^[A-Za-z0-9+/_=.-]{32,}$")


def token_like(name: str, value: str) -> bool:
    if name.lower() in _NAMES and value:
        return True
    return bool(_JWT.match(value) or (_OPAQUE.match(value) and re.search(r"\d", value)
                                      and re.search(r"[A-Za-z]", value)))


def check_query_tokens(ctx: Context) -> Check:
    title = "No token in the query string"
    why = ("A token in the URL (wss://host/ws?token=...) is logged in access logs "
           "(checklist: Authentication)")
    found = [name for name, value in ctx.target.query if token_like(name, value)]
    names = [name for name, _ in ctx.target.query]
    if found:
        return Check("query.tokens", title, Status.WARN,
                     f"token-looking query parameter(s): {', '.join(found)}", why,
                     NGINX_QUERY_LOG, {"parameters": names, "token_like": found})
    saw = (f"query parameters {', '.join(names)}: none looks like a token" if names
           else "no query string")
    return Check("query.tokens", title, Status.PASS, saw, why, None,
                 {"parameters": names, "token_like": []})
