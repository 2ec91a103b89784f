"""The URL under test: ws:// or wss://, host, port, request target."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Target", "parse_target"]


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    secure: bool
    host: str
    port: int
    resource: str  # path and query, as sent on the request line
    query: tuple[tuple[str, str], ...]

    @property
    def host_header(self) -> str:
        default = 443 if self.secure else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def http_origin(self) -> str:
        """The origin a page served by this host would have (used in fix hints)."""
        return ("https://" if self.secure else "http://") + self.host_header


def parse_target(url: str) -> Target:
    """Raise ValueError with a sentence for anything that is not a usable WebSocket URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        raise ValueError(f"{url!r} is an HTTP URL: give ws:// or wss:// "
                         f"(ws{'s' if scheme == 'https' else ''}://{parts.netloc}{parts.path})")
    if scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    secure = scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url=url, secure=secure, host=parts.hostname,
                  port=port or (443 if secure else 80), resource=resource,
                  query=tuple(parse_qsl(parts.query, keep_blank_values=True)))
