"""Which backend URL answers for which channel (or RPC method).

An entry of ``subscribe_proxy_url``, ``publish_proxy_url`` or ``rpc_proxy_url`` is
either a URL (every channel or method) or ``"PATTERN URL"``: a glob pattern, one
space, a URL. Channels and method names never contain spaces and URLs never contain
a raw one, so the split is unambiguous. The first entry that matches wins; a channel
no entry matches is decided by the usual access rules (docs/proxy.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from staywire.protocol.patterns import Glob

__all__ = ["Routes", "check_url"]


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL, else ``ValueError`` saying why."""
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ValueError(f"a proxy URL must start with http:// or https://, got {url!r}")
    return url


class Routes:
    __slots__ = ("entries",)

    def __init__(self, entries: Iterable[str]) -> None:
        parsed: list[tuple[Glob, str]] = []
        for entry in entries:
            parts = entry.split()
            if len(parts) == 1:
                parsed.append((Glob("*"), check_url(parts[0])))
            elif len(parts) == 2:
                parsed.append((Glob(parts[0]), check_url(parts[1])))
            else:
                raise ValueError(f"a proxy route is 'URL' or 'PATTERN URL', got {entry!r}")
        self.entries = tuple(parsed)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def url_for(self, name: str) -> str | None:
        """The URL of the first entry whose pattern matches ``name``, or None."""
        for pattern, url in self.entries:
            if pattern.matches(name):
                return url
        return None
