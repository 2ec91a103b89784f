"""The Origin allow-list (cross-site WebSocket hijacking defence).

Browsers do not apply the same-origin policy to WebSockets: any page on the web
can open a socket to this server and the browser will send its cookies along.
So every handshake that carries an ``Origin`` header must name an allowed
origin, and the list is empty by default: deny, unless configured.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["OriginPolicy"]


def _normalise(origin: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port


class OriginPolicy:
    """``allowed``: exact origins (``https://app.example.com``), wildcard subdomains
    (``https://*.example.com``, which does not match ``example.com`` itself), or ``*``."""

    def __init__(self, allowed: tuple[str, ...] | list[str]) -> None:
        self.allow_all = "*" in allowed
        self._exact: set[tuple[str, str, int | None]] = set()
        self._suffixes: list[tuple[str, str, int | None]] = []
        for entry in allowed:
            if entry == "*":
                continue
            wildcard = "://*." in entry
            norm = _normalise(entry.replace("://*.", "://", 1) if wildcard else entry)
            if norm is None:
                raise ValueError(f"not an origin: {entry!r}")
            if wildcard:
                self._suffixes.append((norm[0], "." + norm[1], norm[2]))
            else:
                self._exact.add(norm)

    def allows(self, origin: str | None) -> bool:
        """``None`` (no header: not a browser) is allowed; ``"null"`` only via ``*``."""
        if origin is None:
            return True
        if self.allow_all:
            return True
        norm = _normalise(origin)
        if norm is None:
            return False
        if norm in self._exact:
            return True
        scheme, host, port = norm
        return any(
            scheme == s and port == p and host.endswith(suffix)
            for s, suffix, p in self._suffixes
        )
