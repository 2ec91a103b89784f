"""One run of the doctor against one URL: the base connection (which also detects the
application protocol), then every check, and the report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from staywire.doctor.checks.closes import check_closes
from staywire.doctor.checks.flood import check_flood
from staywire.doctor.checks.handshake import (
    check_connection_list,
    check_subprotocol,
    check_time,
    check_upgrade,
)
from staywire.doctor.checks.heartbeat import check_heartbeats
from staywire.doctor.checks.limits import check_limits
from staywire.doctor.checks.origin import check_foreign_origin, check_missing_origin
from staywire.doctor.checks.query import check_query_tokens
from staywire.doctor.checks.tls import check_tls
from staywire.doctor.context import Context, Options
from staywire.doctor.fixes import NGINX_UPGRADE
from staywire.doctor.handshake import ConnectFailure
from staywire.doctor.model import Check, Report, Status
from staywire.doctor.presets import PRESETS, custom, detect
from staywire.doctor.probe import Closed, Message
from staywire.doctor.progress import Waits
from staywire.doctor.target import Target

__all__ = ["CHECK_IDS", "run"]

# The order of the report; also the full list of check ids of the JSON schema.
CHECK_IDS = ("handshake.upgrade", "handshake.connection_list", "handshake.subprotocol", "handshake.time", "tls",
             "origin.foreign", "origin.missing", "query.tokens", "heartbeat.pings",
             "heartbeat.interval", "heartbeat.dead_client", "idle.survival",
             "limits.max_message", "limits.oversize", "limits.utf8", "limits.flood", "closes")
_DETECT_WAIT = 1.0  # for the server's first message (Staywire's welcome, Engine.IO's open)


async def _base(ctx: Context) -> None:
    opts = ctx.options
    if opts.preset in PRESETS:
        ctx.preset, ctx.preset_source = PRESETS[opts.preset], "given"
    first: str | None = None
    async with ctx.connect("base", hello=ctx.preset_source == "given") as probe:
        ctx.base = probe.handshake
        while probe.elapsed() < _DETECT_WAIT:
            event = await probe.recv(_DETECT_WAIT - probe.elapsed())
            if isinstance(event, Message) and event.opcode == 0x1:
                first = event.data.decode("utf-8", "replace")
                break
            if isinstance(event, Closed):
                break
    ctx.first_message = first
    if opts.preset == "auto":
        found = detect(first, ctx.base.subprotocol)
        if found is not None:
            ctx.preset, ctx.preset_source = found, "detected"
    if opts.app_ping is not None:
        ctx.preset = custom(opts.app_ping, opts.app_pong,
                            ctx.preset if ctx.preset_source else None)
        ctx.preset_source = "given"
    ctx.announcement = ctx.preset.announced(first) if first is not None else None


def _failed_base(exc: ConnectFailure) -> Check:
    hs = exc.handshake
    fix = None
    if exc.kind == "http" and hs is not None and hs.header("Upgrade") is None:
        fix = NGINX_UPGRADE
    elif exc.kind == "redirect":
        fix = "connect to the URL the redirect names (WebSocket clients do not follow it)"
    return Check("handshake.upgrade", "Upgrade handshake", Status.FAIL, exc.message,
                 "Without HTTP/1.1 and the Upgrade/Connection headers the upgrade fails "
                 "(checklist: Nginx/Proxy Config)", fix,
                 {"status": hs.status if hs else None, "error": exc.kind})


async def _guard(check_id: str, title: str, work: Awaitable[list[Check]]) -> list[Check]:
    """A later connection that cannot open spoils its own check, not the run; so does an
    error of the doctor's own, which is reported as a SKIP (it says nothing about the
    server) with the error, never as a traceback."""
    try:
        return await work
    except ConnectFailure as exc:
        return [Check(check_id, title, Status.FAIL, f"could not connect: {exc.message}",
                      "the checks need a connection like the first one")]
    except Exception as exc:  # noqa: BLE001 - one check's failure must not end the run
        return [Check(check_id, title, Status.SKIP,
                      f"the check could not finish: {type(exc).__name__}: {exc}",
                      "an error in the doctor, not a verdict on the server: please report it",
                      None, {"error": f"{type(exc).__name__}: {exc}"})]


async def _one(work: Awaitable[Check]) -> list[Check]:
    return [await work]


async def run(target: Target, options: Options, waits: Waits | None = None) -> Report:
    ctx = Context(target, options, waits)
    report = Report(target.url, options=options.as_json())
    started = time.monotonic()
    try:
        await _base(ctx)
    except ConnectFailure as exc:
        message = exc.message
        if exc.kind == "http" and exc.handshake is not None and \
                exc.handshake.status == 403 and options.origin is None:
            message += " (refused without an Origin: try --origin https://your.app)"
            exc.message = message
        report.error = (exc.kind, message)
        report.checks = [_failed_base(exc)]
        report.duration = time.monotonic() - started
        return report
    report.preset = ctx.preset.name if ctx.preset_source else None
    report.preset_source = ctx.preset_source
    checks = await _guard("handshake.upgrade", "Upgrade handshake", _one(check_upgrade(ctx)))
    checks += await _guard("handshake.connection_list", "Connection: keep-alive, Upgrade",
                           _one(check_connection_list(ctx)))
    checks += await _guard("handshake.subprotocol", "Subprotocol negotiation",
                           _one(check_subprotocol(ctx)))
    checks.append(check_tls(ctx))
    checks += await _guard("origin.foreign", "Foreign Origin refused",
                           _one(check_foreign_origin(ctx)))
    checks += await _guard("origin.missing", "Missing Origin accepted",
                           _one(check_missing_origin(ctx)))
    checks.append(check_query_tokens(ctx))

    async def limits() -> list[Check]:
        found = await _guard("limits.max_message", "Message limits", check_limits(ctx))
        return found + await _guard("limits.flood", "Per-connection rate limit",
                                    _one(check_flood(ctx)))

    # The heartbeat watches are long and hold two connections; the limits probes run
    # beside them on the third.
    beats, sizes = await asyncio.gather(
        _guard("heartbeat.pings", "Heartbeats", check_heartbeats(ctx)), limits())
    checks += beats + sizes
    checks.append(check_time(ctx))
    checks.append(check_closes(ctx))
    report.checks = sorted(checks, key=lambda c: CHECK_IDS.index(c.id)
                           if c.id in CHECK_IDS else len(CHECK_IDS))
    report.duration = time.monotonic() - started
    return report
