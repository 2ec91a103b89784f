"""``staywire sub`` and ``staywire pub``: the Python client from a shell.

``sub`` prints each message as one JSON line on stdout (so it pipes into
``jq``), and everything about the connection (reconnects, recovery) on stderr,
so a reconnect is visible without corrupting the data stream. Binary data is
printed as base64 with ``"encoding": "base64"``; with ``--binary``, stdout gets
the bytes themselves (``staywire sub --binary --count 1 URL CH > file``).
``pub --binary`` sends bytes (DATA itself, or ``@FILE``; ``@-`` reads stdin).
A transfer is one message: its bytes with ``--binary``, else one line with its
size and SHA-256 once complete.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import ssl
import sys
from collections.abc import Coroutine
from typing import Any

from staywire.client.auth import AuthMode
from staywire.client.client import Client
from staywire.client.state import ConnectionState, StateChange
from staywire.client.subscription import Join, Leave, Message, Recovery
from staywire.client.transfers import Transfer
from staywire.exceptions import ClientError, TransferFailed

__all__ = ["register"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def register(subparsers: Any) -> None:
    """Add ``sub`` and ``pub`` to the ``staywire`` command."""
    sub = subparsers.add_parser(
        "sub",
        help="print a channel's messages as JSON lines",
        description="Subscribe and print each message as a JSON line; reconnects on stderr.",
    )
    sub.add_argument("url", help="ws://host:port/ws")
    sub.add_argument("channel")
    sub.add_argument("--count", type=int, help="exit after this many messages")
    sub.add_argument("--binary", action="store_true",
                     help="write binary data to stdout as raw bytes (JSON messages are noted "
                     "on stderr)")
    _common(sub)
    sub.set_defaults(func=run_sub)

    pub = subparsers.add_parser(
        "pub",
        help="publish one message and print its offset",
        description="Publish DATA (JSON, or else sent as a string; @FILE reads it from a "
        "file, @- from stdin) and print the ack. --binary sends it as bytes.",
    )
    pub.add_argument("url", help="ws://host:port/ws")
    pub.add_argument("channel")
    pub.add_argument("data", help='JSON such as \'{"text": "hi"}\'; anything else is a string; '
                     "@FILE: the file's contents")
    pub.add_argument("--binary", action="store_true",
                     help="publish DATA (or the file) as binary data, bytes unchanged")
    pub.add_argument("--key", help="idempotency key (default: generated)")
    pub.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the ack")
    _common(pub)
    pub.set_defaults(func=run_pub)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", help="credential (default: $STAYWIRE_TOKEN; none: anonymous)")
    p.add_argument(
        "--auth",
        choices=[mode.value for mode in AuthMode],
        default=AuthMode.FIRST_MESSAGE.value,
        help="how the token is presented (default: first_message)",
    )
    p.add_argument(
        "--max-retries", type=int, default=10, help="reconnects in a row before giving up"
    )
    p.add_argument("--ping-interval", type=float, default=30.0)
    p.add_argument("--pong-timeout", type=float, default=10.0)
    p.add_argument("--backoff-base", type=float, default=1.0)
    p.add_argument("--cafile", help="PEM certificates to trust for wss:// (default: the system's)")


def _client(args: argparse.Namespace, **extra: Any) -> Client:
    return Client(
        args.url,
        token=args.token or os.environ.get("STAYWIRE_TOKEN") or None,
        auth=AuthMode(args.auth),
        max_retries=args.max_retries,
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        backoff_base=args.backoff_base,
        ssl_context=ssl.create_default_context(cafile=args.cafile) if args.cafile else None,
        **extra,
    )


def _report(change: StateChange) -> None:
    close = change.close
    why = f" after {close.code} {close.reason}".rstrip() if close else ""
    if change.state is ConnectionState.RECONNECTING:
        print(
            f"staywire: reconnecting in {change.delay or 0:.2f} s (attempt {change.attempt}){why}",
            file=sys.stderr,
            flush=True,
        )
    elif change.state is ConnectionState.OPEN and change.previous is ConnectionState.RECONNECTING:
        print("staywire: reconnected", file=sys.stderr, flush=True)
    elif change.state is ConnectionState.CLOSED and close is not None and close.code != 1000:
        print(f"staywire: closed{why}", file=sys.stderr, flush=True)


async def _sub(args: argparse.Namespace) -> int:
    seen = 0
    client = _client(args, on_state_change=_report)
    async with client, client.subscribe(args.channel) as sub:
        async for item in sub:
            if isinstance(item, Message):
                binary = isinstance(item.data, bytes)
                if args.binary:
                    if binary:
                        sys.stdout.buffer.write(item.data)
                        sys.stdout.buffer.flush()
                    else:
                        print(f"staywire: JSON message at offset {item.offset} not written "
                              "(--binary)", file=sys.stderr, flush=True)
                else:
                    line = {
                        "channel": item.channel,
                        "epoch": item.epoch,
                        "offset": item.offset,
                        "data": base64.b64encode(item.data).decode() if binary else item.data,
                    }
                    if binary:
                        line["encoding"] = "base64"
                    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
                    sys.stdout.flush()
                seen += 1
                if args.count is not None and seen >= args.count:
                    return EXIT_OK
            elif isinstance(item, Transfer):
                if await _transfer(item, binary=args.binary):
                    seen += 1
                    if args.count is not None and seen >= args.count:
                        return EXIT_OK
            elif isinstance(item, Join | Leave):
                who = item.user or f"anonymous {item.client}"
                verb = "joined" if isinstance(item, Join) else "left"
                print(f"staywire: {who} {verb} {item.channel}", file=sys.stderr, flush=True)
            elif isinstance(item, Recovery):
                why = "stream recreated" if item.epoch_changed else "history incomplete"
                print(
                    f"staywire: {item.channel} not recovered ({why}): messages may be missing",
                    file=sys.stderr,
                    flush=True,
                )
    return EXIT_OK


async def _transfer(transfer: Transfer, *, binary: bool) -> bool:
    """A transfer as it arrives: its bytes to stdout with ``--binary``, else one JSON line
    with its size and SHA-256 once complete. False when it failed (said on stderr)."""
    digest = hashlib.sha256()
    try:
        async for chunk in transfer:
            if binary:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            else:
                digest.update(chunk)
    except TransferFailed as exc:
        print(f"staywire: transfer {transfer.id} on {transfer.channel} failed: {exc}",
              file=sys.stderr, flush=True)
        return False
    if not binary:
        line = {"channel": transfer.channel, "transfer": transfer.id, "size": transfer.done,
                "sha256": digest.hexdigest(), "meta": transfer.meta}
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    return True


def _payload(args: argparse.Namespace) -> Any:
    """DATA as given: ``@FILE`` (``@-``: stdin) read whole; bytes with ``--binary``, else
    JSON when it parses, else the text as a string."""
    raw: bytes | None = None
    if args.data.startswith("@"):
        path = args.data[1:]
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:  # OSError: reported by _main, exit 1
                raw = f.read()
    if args.binary:
        return raw if raw is not None else args.data.encode()
    text = raw.decode() if raw is not None else args.data
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _pub(args: argparse.Namespace) -> int:
    data = _payload(args)
    async with _client(args) as client:
        offset = await client.publish(args.channel, data, key=args.key, timeout=args.timeout)
        print(
            json.dumps({"channel": args.channel, "offset": offset}, separators=(",", ":")),
            flush=True,
        )
    return EXIT_OK


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)


def _main(coro: Coroutine[Any, Any, int]) -> int:
    try:
        return _run(coro)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (ClientError, ValueError, TypeError, OSError) as exc:
        print(f"staywire: {exc}", file=sys.stderr)
        return EXIT_FAILED


def run_sub(args: argparse.Namespace) -> int:
    return _main(_sub(args))


def run_pub(args: argparse.Namespace) -> int:
    return _main(_pub(args))
