"""``staywire nginx``: print a working nginx configuration for a set of nodes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from staywire.deploy.nginx import NginxOptions, render

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("nginx", help="print an nginx config for Staywire nodes",
                       description="Print an nginx configuration that proxies WebSockets to "
                                   "the given Staywire nodes (see docs/deployment.md).")
    p.add_argument("--backend", action="append", required=True, dest="backends",
                   help="HOST:PORT of a node (repeatable)")
    p.add_argument("--listen", default="8080", help="nginx listen directive (default 8080)")
    p.add_argument("--server-name", default="_")
    p.add_argument("--ws-path", default="/ws")
    p.add_argument("--ping-interval", type=float, default=25.0,
                   help="the nodes' ping interval; proxy_read_timeout stays well above it")
    p.add_argument("--sticky", action="store_true",
                   help="route by the `client` query parameter (hash ... consistent)")
    p.add_argument("--runtime-dir", help="write pid, logs and temp files here (daemon off)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        text = render(NginxOptions(backends=tuple(args.backends), listen=args.listen,
                                   server_name=args.server_name, ws_path=args.ws_path,
                                   ping_interval=args.ping_interval, sticky=args.sticky,
                                   runtime_dir=args.runtime_dir))
    except ValueError as exc:
        print(f"staywire nginx: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
