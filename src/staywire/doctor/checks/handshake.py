"""The upgrade itself: HTTP/1.1 101 with the right headers (and the Connection header
Firefox sends), subprotocol negotiation, and how long a handshake takes."""

from __future__ import annotations

from staywire.doctor.context import Context
from staywire.doctor.fixes import NGINX_UPGRADE
from staywire.doctor.handshake import Handshake
from staywire.doctor.model import Check, Status

__all__ = ["check_connection_list", "check_subprotocol", "check_time", "check_upgrade"]

_WHY_UPGRADE = ("Without HTTP/1.1 and the Upgrade/Connection headers the upgrade fails and the "
                "connection closes at once (checklist: Nginx/Proxy Config)")
_BOGUS = "doctor.invalid"


def _problems(hs: Handshake) -> list[str]:
    found = []
    if hs.version != "HTTP/1.1":
        found.append(f"answered in {hs.version}, not HTTP/1.1")
    if "websocket" not in hs.tokens("Upgrade"):
        found.append(f"Upgrade: {hs.header('Upgrade')!r}, not 'websocket'")
    if "upgrade" not in hs.tokens("Connection"):
        found.append(f"Connection: {hs.header('Connection')!r}, without 'upgrade'")
    if not hs.accept_ok:
        found.append("Sec-WebSocket-Accept missing or wrong (RFC 6455 section 4.2.2)")
    return found


async def check_upgrade(ctx: Context) -> Check:
    base = ctx.base
    assert base is not None, "the base connection runs first"
    problems = _problems(base)
    data = {"version": base.version, "status": base.status,
            "upgrade": base.header("Upgrade"), "connection": base.header("Connection"),
            "accept_valid": base.accept_ok}
    if problems:
        return Check("handshake.upgrade", "Upgrade handshake", Status.FAIL, "; ".join(problems),
                     _WHY_UPGRADE, NGINX_UPGRADE, data)
    return Check("handshake.upgrade", "Upgrade handshake", Status.PASS,
                 f"{base.version} 101, Upgrade: {base.header('Upgrade')}, Connection: "
                 f"{base.header('Connection')}, valid Sec-WebSocket-Accept", _WHY_UPGRADE, None,
                 data)


async def check_connection_list(ctx: Context) -> Check:
    """Firefox sends "Connection: keep-alive, Upgrade"; RFC 6455 section 4.2.1 asks only
    that the header *include* the token. A server or proxy that compares the whole value
    with "Upgrade" refuses every Firefox user, and Chromium-only tests never see it."""
    title = "Connection: keep-alive, Upgrade"
    hs = await ctx.handshake(connection="keep-alive, Upgrade", subprotocols=ctx.subprotocols,
                             origin=ctx.options.origin)
    data = {"status": hs.status}
    why = ("Firefox sends this header; the upgrade must accept any Connection list holding "
           "'Upgrade' (RFC 6455 4.2.1; checklist: Nginx/Proxy Config)")
    if hs.status == 101:
        return Check("handshake.connection_list", title, Status.PASS,
                     "accepted (101), as Firefox needs", why, None, data)
    body = f" ({hs.reason})" if hs.reason else ""
    return Check("handshake.connection_list", title, Status.FAIL,
                 f"refused with HTTP {hs.status}{body}: Firefox users cannot connect "
                 "directly", why,
                 "accept a Connection header whose comma-separated tokens include 'upgrade' "
                 "(or put nginx in front: it sends the upstream 'Connection: upgrade')", data)


async def check_subprotocol(ctx: Context) -> Check:
    title = "Subprotocol negotiation"
    why = ("The subprotocol names the message format both ends speak; a server that selects "
           "none, or any, lets a client talk past it (checklist: Message Handling)")
    if not ctx.subprotocols:
        return Check("handshake.subprotocol", title, Status.SKIP,
                     "no subprotocol asked for (--subprotocol NAME, or a preset that has one)",
                     why)
    name = ctx.subprotocols[0]
    # The connect of the base connection offered it already when it was known; ask again
    # so the verdict does not depend on the order of detection.
    asked = await ctx.handshake(subprotocols=(name,), origin=ctx.options.origin)
    bogus = await ctx.handshake(subprotocols=(_BOGUS,), origin=ctx.options.origin)
    selected = asked.subprotocol if asked.status == 101 else None
    bogus_selected = bogus.subprotocol if bogus.status == 101 else None
    data = {"offered": name, "selected": selected, "status": asked.status,
            "unknown_offered": _BOGUS, "unknown_status": bogus.status,
            "unknown_selected": bogus_selected}
    unknown = (f"an unknown one ({_BOGUS}) refused with HTTP {bogus.status}"
               if bogus.status != 101 else
               f"an unknown one ({_BOGUS}) accepted, selected {bogus_selected!r}")
    if asked.status != 101:
        return Check("handshake.subprotocol", title, Status.FAIL,
                     f"offering {name!r} is refused with HTTP {asked.status}", why, None, data)
    if bogus_selected == _BOGUS:
        return Check("handshake.subprotocol", title, Status.FAIL,
                     f"selects {selected!r} for {name!r}, but also selects {_BOGUS!r}: it "
                     "echoes whatever is offered", why,
                     "select only the subprotocols the server implements", data)
    if selected != name:
        return Check("handshake.subprotocol", title, Status.WARN if selected is None
                     else Status.FAIL, f"offered {name!r}, server selected {selected!r}; "
                     f"{unknown}", why,
                     f"have the server select {name!r} when the client offers it", data)
    return Check("handshake.subprotocol", title, Status.PASS,
                 f"offered {name!r}, selected {name!r}; {unknown}", why, None, data)


def check_time(ctx: Context) -> Check:
    times = sorted(ctx.handshake_times)
    title = "Handshake time"
    why = ("Every reconnect pays it, and after an outage every client pays it at once "
           "(checklist: Reconnection, thundering herd)")
    if not times:
        return Check("handshake.time", title, Status.SKIP, "no handshake completed", why)
    median = times[len(times) // 2]
    data = {"median_ms": round(median * 1000, 1), "max_ms": round(times[-1] * 1000, 1),
            "samples": len(times)}
    saw = (f"median {median * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms over {len(times)} "
           f"handshakes ({'TCP + TLS + upgrade' if ctx.target.secure else 'TCP + upgrade'})")
    status = Status.PASS if median < 1.0 else Status.WARN if median < 3.0 else Status.FAIL
    fix = None if status is Status.PASS else (
        "look for DNS, TLS or upstream connect delays (nginx: proxy_connect_timeout, "
        "keep the server near the proxy)")
    return Check("handshake.time", title, status, saw, why, fix, data)
