"""Heartbeats and idle survival, from two watched connections at once: a live client
(answers every ping, sends nothing of its own) and a dead one (answers nothing).

Without --slow no wait is longer than context.QUICK_WAIT: what the server announces
(Staywire's welcome, Engine.IO's open packet) stands in for what would take longer to
see, and the report says which values were seen and which announced."""

from __future__ import annotations

import asyncio

from staywire.doctor.context import Context
from staywire.doctor.fixes import NGINX_TIMEOUT
from staywire.doctor.model import Check, Status
from staywire.doctor.watch import Watch, watch

__all__ = ["check_heartbeats"]

_WHY_PINGS = ("No heartbeat: the connection looks alive but is dead and messages go nowhere; "
              "the server should ping too (checklist: Heartbeats)")
_WHY_DEAD = ("The server should ping to detect dead clients and free their resources; TCP "
             "FIN may never arrive (checklist: Heartbeats, Reconnection)")
_WHY_INTERVAL = ("Proxies cut connections idle for 60-120 s: the heartbeat must be more "
                 "frequent; proxy_read_timeout must exceed the ping interval (checklist)")
_WHY_IDLE = ("A quiet client must survive the proxies' idle timeouts, or be closed with a "
             "code it can act on (checklist: Nginx/Proxy Config, Close Codes)")


def _margin(idle: float) -> float:
    return max(2.0, idle * 0.1)


def _plans(ctx: Context) -> tuple[float, float, float]:
    """(live watch, dead watch, idle need) in seconds."""
    opts = ctx.options
    cap = opts.wait_cap
    ann = ctx.announcement
    idle_need = opts.idle_timeout + _margin(opts.idle_timeout) if opts.slow else 0.0
    if ann is None:
        return cap, cap, idle_need
    live_need = ann.interval * 1.2 + 1
    dead_need = (ann.interval + (ann.timeout or ann.interval)) * 1.2 + 2
    if opts.slow:
        return min(cap, max(live_need, idle_need)), min(cap, dead_need), idle_need
    return (live_need if live_need <= cap else 0.0), (dead_need if dead_need <= cap else 0.0), 0.0


async def check_heartbeats(ctx: Context) -> list[Check]:
    live_plan, dead_plan, idle_need = _plans(ctx)
    # A live watch stops at two pings (one when the interval is announced), unless it
    # must also outlast the idle timeout.
    pings_needed = 1 if ctx.announcement else 2
    live, dead = await asyncio.gather(
        watch(ctx, "live client", live_plan, answer=True, doing="waiting for server pings",
              enough_pings=pings_needed, at_least=idle_need),
        watch(ctx, "dead client", dead_plan, answer=False, doing="waiting to be dropped"))
    return [_pings(ctx, live), _interval(ctx, live), _dead(ctx, dead, live),
            _idle(ctx, live, idle_need)]


def _cut_early(w: Watch) -> bool:
    """Dropped without a close frame before any ping: the path's idle timeout, not the
    server's heartbeat."""
    return w.closed is not None and not w.closed.frame and not w.pings


def _pings(ctx: Context, live: Watch) -> Check:
    title = "Server pings"
    ann = ctx.announcement
    data: dict[str, object] = {"observed": bool(live.pings), "waited_s": round(live.waited, 1),
                               "announced_interval_s": ann.interval if ann else None,
                               "kind": live.kind() or None}
    if live.pings:
        return Check("heartbeat.pings", title, Status.PASS,
                     f"{len(live.pings)} ping(s) as {live.kind()}, the first after "
                     f"{live.pings[0].at:.1f} s", _WHY_PINGS, None, data)
    if _cut_early(live):
        assert live.closed is not None
        return Check("heartbeat.pings", title, Status.WARN,
                     f"no ping: the quiet connection was {live.closed.describe()}",
                     _WHY_PINGS, NGINX_TIMEOUT, data)
    if ann is not None:
        how = (f"none seen in {live.waited:.1f} s" if live.ran else
               f"not watched: seeing one takes ~{ann.interval * 1.2 + 1:.0f} s (--slow)")
        return Check("heartbeat.pings", title, Status.PASS,
                     f"announces application pings every {ann.interval:g} s ({ann.source}); "
                     f"{how}", _WHY_PINGS, None, data | {"evidence": "announced"})
    fail = live.waited >= ctx.options.idle_timeout
    kinds = (f"protocol-level, or {ctx.preset.name} application" if ctx.preset_source
             else "protocol-level; no application ping known")
    more = "" if fail else ("; wait longer with --slow --max-wait N, or name the app ping "
                            "(--preset, --app-ping)")
    if live.closed is not None:
        more = f"; the connection was {live.closed.describe()}" + more
    return Check("heartbeat.pings", title, Status.FAIL if fail else Status.WARN,
                 f"no ping ({kinds}) in {live.waited:.1f} s{more}", _WHY_PINGS,
                 "have the server ping every 20-30 s (websockets: ping_interval; ws: "
                 "ws.ping() on a timer; socket.io: pingInterval)", data)


def _interval(ctx: Context, live: Watch) -> Check:
    title = "Ping interval below idle timeout"
    idle = ctx.options.idle_timeout
    ann = ctx.announcement
    seen = live.interval()
    interval = seen if seen is not None else (ann.interval if ann else None)
    data: dict[str, object] = {"interval_s": round(interval, 2) if interval else None,
                               "evidence": "observed" if seen is not None else
                               "announced" if ann else None, "idle_timeout_s": idle}
    if _cut_early(live):
        assert live.closed is not None
        at = live.closed.at
        every = f" (the server pings every {interval:g} s)" if interval else ""
        return Check("heartbeat.interval", title, Status.FAIL,
                     f"a quiet connection was cut without a close frame after {at:.1f} s, "
                     f"before any ping{every}: an idle timeout on the path is shorter than "
                     "the heartbeat", _WHY_INTERVAL, NGINX_TIMEOUT, data | {"cut_after_s": at})
    if interval is None:
        if live.waited >= idle:
            return Check("heartbeat.interval", title, Status.FAIL,
                         f"silent for {live.waited:.1f} s, over the {idle:g} s idle timeout",
                         _WHY_INTERVAL, NGINX_TIMEOUT, data)
        return Check("heartbeat.interval", title, Status.SKIP,
                     "no ping seen or announced", _WHY_INTERVAL, None, data)
    how = "seen" if seen is not None else "announced"
    if interval < idle:
        return Check("heartbeat.interval", title, Status.PASS,
                     f"{interval:.1f} s ({how}) < idle timeout {idle:g} s (--idle-timeout)",
                     _WHY_INTERVAL, None, data)
    return Check("heartbeat.interval", title, Status.FAIL,
                 f"{interval:.1f} s ({how}) >= idle timeout {idle:g} s: a proxy cuts quiet "
                 "clients before the next ping", _WHY_INTERVAL, NGINX_TIMEOUT, data)


def _dead(ctx: Context, dead: Watch, live: Watch) -> Check:
    title = "Dead client dropped"
    ann = ctx.announcement
    closed = dead.closed
    data: dict[str, object] = {"waited_s": round(dead.waited, 1), "closed": closed is not None,
                               "after_s": round(closed.at, 1) if closed else None,
                               "code": closed.code if closed else None}
    if closed is not None:
        if dead.pings:
            after = closed.at - dead.pings[-1].at
            return Check("heartbeat.dead_client", title, Status.PASS,
                         f"{closed.describe()}, {after:.1f} s after the unanswered ping",
                         _WHY_DEAD, None, data)
        if not closed.frame:
            return Check("heartbeat.dead_client", title, Status.WARN,
                         f"{closed.describe()} before any ping: the path cut it, not the "
                         "server's heartbeat", _WHY_DEAD, NGINX_TIMEOUT, data)
        return Check("heartbeat.dead_client", title, Status.PASS,
                     f"{closed.describe()} (silent client)", _WHY_DEAD, None, data)
    if ann is not None and ann.timeout is not None:
        how = (f"still open after {dead.waited:.1f} s" if dead.ran else
               f"not watched: it takes ~{ann.interval + ann.timeout:.0f} s (--slow)")
        return Check("heartbeat.dead_client", title, Status.PASS,
                     f"announces a {ann.timeout:g} s pong timeout after each "
                     f"{ann.interval:g} s ping ({ann.source}); {how}", _WHY_DEAD, None,
                     data | {"evidence": "announced"})
    never_pings = not live.pings and ann is None and live.waited >= ctx.options.idle_timeout
    status = Status.FAIL if never_pings else Status.WARN
    unanswered = f" after {len(dead.pings)} unanswered ping(s)" if dead.pings else ""
    return Check("heartbeat.dead_client", title, status,
                 f"still open after {dead.waited:.1f} s of silence{unanswered}", _WHY_DEAD,
                 "close a client that has not answered a ping within ~10 s", data)


def _idle(ctx: Context, live: Watch, need: float) -> Check:
    title = "Idle connection survives"
    if not ctx.options.slow:
        return Check("idle.survival", title, Status.SKIP,
                     "not run: it holds a quiet connection for --idle-timeout plus a margin "
                     "(use --slow)", _WHY_IDLE)
    closed = live.closed
    data: dict[str, object] = {"waited_s": round(live.waited, 1), "needed_s": round(need, 1),
                               "closed": closed is not None,
                               "code": closed.code if closed else None}
    if closed is None:
        if live.waited + 0.5 < need:
            return Check("idle.survival", title, Status.WARN,
                         f"open after {live.waited:.1f} s, short of the {need:.0f} s needed: "
                         "--max-wait stopped the wait", _WHY_IDLE, None, data)
        return Check("idle.survival", title, Status.PASS,
                     f"open after {live.waited:.1f} s answering pings but sending nothing",
                     _WHY_IDLE, None, data)
    if closed.frame and closed.code is not None:
        return Check("idle.survival", title, Status.PASS, f"{closed.describe()}: the client "
                     "is told why", _WHY_IDLE, None, data)
    return Check("idle.survival", title, Status.FAIL,
                 f"the quiet connection was {closed.describe()}: an idle timeout on the "
                 "path (a proxy's proxy_read_timeout?) is shorter than the heartbeat",
                 _WHY_IDLE, NGINX_TIMEOUT, data)
