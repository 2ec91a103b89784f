"""The ``staywire`` command: ``serve``, and the subcommands other packages register."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from staywire.channel_options import parse_channel_rules
from staywire.exceptions import ConfigError

__all__ = ["main"]

# Subcommand providers: each module has ``register(subparsers)``; a provider that is not
# installed (an optional part) is skipped.
_PROVIDERS = ("staywire.client.cli", "staywire.deploy.cli", "staywire.doctor.cli")
# Distributions of their own add subcommands through this entry-point group (each entry
# point names a ``register(subparsers)``), so this package never imports them by name.
_COMMANDS = "staywire.commands"
# How to get a known subcommand of such a distribution when it is not installed.
_INSTALL_HINTS = {"bench": "pip install -e bench/ from the Staywire checkout (or: make bench)"}


# ``--demo`` without [channels] tables: its rooms have presence and join/leave events.
DEMO_CHANNELS = parse_channel_rules({"room:*": {"presence": True, "join_leave": True}},
                                    "--demo")

def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run a Staywire server",
                       description="Run a Staywire server. Flags override the config file and "
                                   "STAYWIRE_* environment variables.")
    p.add_argument("--config", help="TOML file of options (see docs/configuration.md)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--api-host")
    p.add_argument("--api-port", type=int, help="internal API/metrics port (0: off)")
    p.add_argument("--allowed-origin", action="append", dest="allowed_origins",
                   help="an allowed browser Origin (repeatable; https://*.example.com works)")
    p.add_argument("--jwt-secret", help="HS256 secret for JWT auth")
    p.add_argument("--jwt-public-key", help="RS256 public key (PEM text or file)")
    p.add_argument("--api-key", help="Bearer key for the server API (POST /api/<method>)")
    p.add_argument("--api-node-timeout", type=float,
                   help="seconds a cluster-wide API method waits for the other nodes")
    p.add_argument("--allow-anonymous", action="store_const", const=True)
    p.add_argument("--anonymous-channel", action="append", dest="anonymous_channels",
                   help="channel pattern anonymous users may use (repeatable)")
    p.add_argument("--ping-interval", type=float)
    p.add_argument("--pong-timeout", type=float)
    p.add_argument("--auth-timeout", type=float)
    p.add_argument("--max-message-size", type=int)
    p.add_argument("--max-send-buffer", type=int)
    p.add_argument("--binary", action=argparse.BooleanOptionalAction, default=None,
                   help="select protocol v2 (binary frames) for clients that offer it "
                   "(default: on)")
    p.add_argument("--max-connections", type=int)
    p.add_argument("--max-connections-per-ip", type=int)
    p.add_argument("--handshake-rate", type=float)
    p.add_argument("--handshake-burst", type=float)
    p.add_argument("--rate-messages", type=float)
    p.add_argument("--rate-burst", type=float)
    p.add_argument("--rate-bytes", type=float, help="per-connection bytes per second")
    p.add_argument("--rate-bytes-burst", type=float)
    p.add_argument("--history-size", type=int)
    p.add_argument("--history-ttl", type=float)
    p.add_argument("--presence-grace", type=float,
                   help="seconds a dropped connection stays a presence member (default 5)")
    p.add_argument("--presence-ttl", type=float,
                   help="Redis: seconds a node's members outlive its last heartbeat (default 15)")
    p.add_argument("--dedupe-window", type=float,
                   help="seconds an idempotency key is remembered")
    p.add_argument("--drain-window", type=float)
    p.add_argument("--shutdown-timeout", type=float)
    p.add_argument("--gc-policy", choices=("tuned", "python"),
                   help="garbage collection: 'tuned' (default: start-up frozen, rarer "
                   "collections) or 'python' (the interpreter's defaults)")
    p.add_argument("--broker", help="'memory' (default), redis://host:port/db, "
                   "redis+sentinel://host:port[,host:port]/SERVICE/DB or "
                   "redis+cluster://host:port[,host:port]/")
    p.add_argument("--redis-wait-replicas", type=int,
                   help="acknowledge a publish once that many replicas have it (WAIT)")
    p.add_argument("--redis-wait-timeout", type=float,
                   help="seconds WAIT may take before the publish is refused as unavailable")
    p.add_argument("--trusted-proxy-header", help="e.g. X-Forwarded-For behind nginx")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--demo", action="store_const", const=True, help="serve the demo page at /")
    p.add_argument("--echo-path", help="raw echo endpoint for conformance testing")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from staywire.config import load_config

    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("func", "config", "command") and v is not None}
    if overrides.get("demo") and not overrides.get("anonymous_channels") and \
            overrides.get("allow_anonymous"):
        overrides["anonymous_channels"] = ["*"]
    try:
        config = load_config(path=args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"staywire: {exc}", file=sys.stderr)
        return 2
    if config.demo and not config.channels:
        config = config.replace(channels=DEMO_CHANNELS)  # the demo shows who is in the room
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("staywire.picows").setLevel(logging.WARNING)
    if config.allow_anonymous and not config.anonymous_channels:
        logging.getLogger("staywire").warning(
            "allow_anonymous is on but anonymous_channels is empty: anonymous users can "
            "connect but use no channel (try --anonymous-channel '*')")
    _raise_fd_limit()
    # The port first, the server's imports after: clients of a restarted node wait in the
    # backlog for those instead of being refused (server/listen_socket.py).
    from staywire.server.listen_socket import bind_early

    try:
        sock = bind_early(config.host, config.port)
    except OSError as exc:
        print(f"staywire: cannot listen: {exc.strerror}", file=sys.stderr)
        return 1
    from staywire.server.app import Server

    try:
        server = Server(config, listen_socket=sock)
    except ConfigError as exc:
        if sock is not None:
            sock.close()
        print(f"staywire: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop

        uvloop.run(server.serve())
    except OSError as exc:
        print(f"staywire: cannot listen: {exc.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        pass
    return 0


def _raise_fd_limit() -> None:
    """Each connection is a file descriptor; the usual soft limit of 1024 would cap a
    server far below what its memory allows, so take the hard limit."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX, or refused
        pass


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; for ``serve`` only its own, so a server restart does not import the
    client, the bench and their dependencies (restart time is reconnect-storm time)."""
    parser = argparse.ArgumentParser(prog="staywire",
                                     description="Staywire real-time WebSocket server and tools")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    if command == "serve":
        return parser
    for name in _PROVIDERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    from importlib.metadata import entry_points  # not on the serve path: 20 ms of imports

    for entry in entry_points(group=_COMMANDS):
        entry.load()(sub)
    return parser


def _installed(command: str) -> bool:
    from importlib.metadata import entry_points

    return bool(entry_points(group=_COMMANDS, name=command))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command in _INSTALL_HINTS and not _installed(command):
        print(f"staywire: '{command}' is not installed; install it with "
              f"{_INSTALL_HINTS[command]}", file=sys.stderr)
        return 2
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
