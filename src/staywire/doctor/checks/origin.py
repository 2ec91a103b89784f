"""Origin: a foreign Origin (and the "null" origin of sandboxed frames and file://
pages) must be refused; a missing one (a non-browser client) may be accepted."""

from __future__ import annotations

from staywire.doctor.context import Context
from staywire.doctor.fixes import NGINX_ORIGIN
from staywire.doctor.model import Check, Status

__all__ = ["FOREIGN_ORIGIN", "check_foreign_origin", "check_missing_origin"]

FOREIGN_ORIGIN = "https://staywire-doctor.invalid"
_WHY = ("Any page can open a WebSocket to any server and the browser sends its cookies: "
        "validate Origin on the handshake (checklist: Security, cross-site hijacking)")


async def check_foreign_origin(ctx: Context) -> Check:
    title = "Foreign Origin refused"
    foreign = await ctx.handshake(origin=FOREIGN_ORIGIN, subprotocols=ctx.subprotocols)
    null = await ctx.handshake(origin="null", subprotocols=ctx.subprotocols)
    accepted = [o for o, hs in ((FOREIGN_ORIGIN, foreign), ("null", null)) if hs.status == 101]
    data = {"foreign_status": foreign.status, "null_status": null.status,
            "takes_cookies": ctx.takes_cookies}
    if not accepted:
        return Check("origin.foreign", title, Status.PASS,
                     f"Origin {FOREIGN_ORIGIN} refused with HTTP {foreign.status}, Origin null "
                     f"with HTTP {null.status}", _WHY, None, data)
    cookies = ("it also takes cookies (" + ("a Set-Cookie answer" if ctx.set_cookie
               else "--cookie") + ")") if ctx.takes_cookies else \
        "no cookie seen (if it authenticates with cookies this is a FAIL)"
    saw = f"accepted Origin {' and '.join(accepted)}; {cookies}"
    status = Status.FAIL if ctx.takes_cookies else Status.WARN
    return Check("origin.foreign", title, status, saw, _WHY, NGINX_ORIGIN, data)


async def check_missing_origin(ctx: Context) -> Check:
    title = "Missing Origin accepted"
    why = ("Browsers always send Origin; servers, mobile apps and CLI tools do not, and "
           "refusing them adds no protection (checklist: Security)")
    if ctx.options.origin is None:
        # The base connection went without an Origin: it is the evidence.
        return Check("origin.missing", title, Status.PASS,
                     "handshakes without an Origin header are accepted", why,
                     None, {"status": 101})
    hs = await ctx.handshake(subprotocols=ctx.subprotocols)
    if hs.status == 101:
        return Check("origin.missing", title, Status.PASS,
                     "a handshake without an Origin header is accepted", why, None,
                     {"status": hs.status})
    return Check("origin.missing", title, Status.WARN,
                 f"a handshake without an Origin header is refused with HTTP {hs.status}",
                 why, "accept a missing Origin: only browsers send one", {"status": hs.status})
