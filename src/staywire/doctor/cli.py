"""``staywire doctor URL``: parse the options, run, print, exit 0 / 1 / 2."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
from typing import Any

from staywire.doctor.context import Options
from staywire.doctor.presets import PRESETS

__all__ = ["register"]

_MAX_PROBE = 256 * 1024 * 1024  # a ceiling on what --max-probe-size may ask for
_MAX_FLOOD = 10_000


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?|B)?\s*", text, re.IGNORECASE)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 65536, 64KiB, 16MiB)")
    unit = (m.group(2) or "B").upper()[:1]
    return int(m.group(1)) * {"B": 1, "K": 1024, "M": 1 << 20, "G": 1 << 30}[unit]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 < seconds <= 3600")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor", help="check a WebSocket endpoint and its proxies against the checklist",
        description="Check any WebSocket endpoint (Staywire or not) and the proxies in front "
                    "of it: handshake, TLS, Origin, heartbeats, limits, close codes. Exit 0: "
                    "no FAIL; 1: a FAIL; 2: no WebSocket could be opened (docs/doctor.md).")
    p.add_argument("url", help="ws:// or wss:// URL of the endpoint")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("--subprotocol", help="subprotocol to offer and check")
    p.add_argument("--preset", choices=["auto", "none", *PRESETS], default="auto",
                   help="application heartbeat protocol (default: detect from the server's "
                        "first message)")
    p.add_argument("--app-ping", help="the server's application ping: a JSON object whose "
                                      "fields must match, or an exact text")
    p.add_argument("--app-pong", help="the text to answer it with")
    p.add_argument("--idle-timeout", type=_seconds, default=60.0,
                   help="the idle timeout of the proxies on the path (default 60 s)")
    p.add_argument("--max-wait", type=_seconds, default=90.0,
                   help="bound on each long wait with --slow (default 90 s)")
    p.add_argument("--max-probe-size", type=_size, default=16 * 1024 * 1024,
                   help="largest message sent (default 16MiB)")
    p.add_argument("--slow", action="store_true",
                   help="watch heartbeats and idle survival for real (waits up to --max-wait)")
    p.add_argument("--flood", action="store_true", help="send a bounded burst to see whether "
                                                        "the server rate-limits")
    p.add_argument("--flood-count", type=int, default=1000, help="messages in the burst")
    p.add_argument("--origin", help="the Origin of your own pages, sent on every handshake")
    p.add_argument("--cookie", help="a Cookie header to send (the endpoint takes cookies)")
    p.add_argument("--cafile", help="CA bundle to verify a wss:// certificate with")
    p.add_argument("--connect-timeout", type=_seconds, default=10.0)
    p.add_argument("--compare-direct", metavar="URL",
                   help="the backend's own URL: run the checks there too, report differences")
    p.set_defaults(func=_run)


def _options(args: argparse.Namespace) -> Options:
    if not 1024 <= args.max_probe_size <= _MAX_PROBE:
        raise ValueError("--max-probe-size must be between 1KiB and 256MiB")
    if not 1 <= args.flood_count <= _MAX_FLOOD:
        raise ValueError(f"--flood-count must be between 1 and {_MAX_FLOOD}")
    if args.app_pong is not None and args.app_ping is None:
        raise ValueError("--app-pong needs --app-ping")
    return Options(subprotocol=args.subprotocol, preset=args.preset, app_ping=args.app_ping,
                   app_pong=args.app_pong, idle_timeout=args.idle_timeout,
                   max_wait=args.max_wait, max_probe_size=args.max_probe_size, slow=args.slow,
                   flood=args.flood, flood_count=args.flood_count, origin=args.origin,
                   cookie=args.cookie, cafile=args.cafile,
                   connect_timeout=args.connect_timeout)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from staywire.doctor.compare import differences
    from staywire.doctor.progress import RichProgress
    from staywire.doctor.report import as_json, exit_code, render
    from staywire.doctor.runner import run
    from staywire.doctor.target import parse_target

    try:
        options = _options(args)
        target = parse_target(args.url)
        direct_target = parse_target(args.compare_direct) if args.compare_direct else None
    except ValueError as exc:
        print(f"staywire doctor: {exc}", file=sys.stderr)
        return 2
    live = not args.json and sys.stderr.isatty()

    async def main() -> tuple[Any, Any]:
        with RichProgress() if live else contextlib.nullcontext() as waits:
            report = await run(target, options, waits)
            direct = await run(direct_target, options, waits) if direct_target else None
        return report, direct

    try:
        report, direct = asyncio.run(main())
    except KeyboardInterrupt:
        print("staywire doctor: interrupted", file=sys.stderr)
        return 130
    diffs = differences(report, direct) if direct is not None else None
    if args.json:
        print(as_json(report, direct, diffs))
    else:
        render(Console(), report, direct, diffs)
    return exit_code(report, direct)
