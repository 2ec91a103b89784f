"""Open TCP (and TLS), send the HTTP/1.1 upgrade, read the answer: every way this fails
becomes a ``ConnectFailure`` with one clear sentence, never a traceback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import time
from dataclasses import dataclass, field

from staywire.doctor.target import Target

__all__ = ["ConnectFailure", "Handshake", "TlsInfo", "refusal", "upgrade"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
USER_AGENT = "staywire-doctor/1"


class ConnectFailure(Exception):
    """No WebSocket could be opened. ``kind`` is one of dns, refused, timeout, unreachable,
    tls, not_http, redirect, http, closed, handshake (the schema of docs/doctor.md)."""

    def __init__(self, kind: str, message: str, handshake: Handshake | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.handshake = handshake


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str
    not_after: float  # Unix seconds
    issuer: str
    subject: str


@dataclass(slots=True)
class Handshake:
    status: int
    version: str  # "HTTP/1.1"
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    elapsed: float = 0.0  # TCP + TLS + upgrade, seconds
    key: str = ""
    tls: TlsInfo | None = None

    def header(self, name: str) -> str | None:
        name = name.lower()
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> set[str]:
        value = self.header(name) or ""
        return {t.strip().lower() for t in value.split(",") if t.strip()}

    @property
    def accept_ok(self) -> bool:
        expected = base64.b64encode(hashlib.sha1(self.key.encode() + _GUID).digest()).decode()
        return self.header("Sec-WebSocket-Accept") == expected

    @property
    def subprotocol(self) -> str | None:
        return self.header("Sec-WebSocket-Protocol")


def _tls_context(cafile: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)  # verifies the chain and the hostname
    ctx.set_alpn_protocols(["http/1.1"])  # WebSocket over HTTP/2 is another handshake
    return ctx


def _tls_info(writer: asyncio.StreamWriter) -> TlsInfo | None:
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return None
    cert = obj.getpeercert() or {}

    def name(key: str) -> str:
        parts = [v for rdn in cert.get(key, ()) for k, v in rdn if k in ("commonName", "O")]
        return ", ".join(parts) or "?"

    not_after = cert.get("notAfter")
    return TlsInfo(version=obj.version() or "?", subject=name("subject"), issuer=name("issuer"),
                   not_after=ssl.cert_time_to_seconds(not_after) if isinstance(not_after, str)
                   else 0.0)


async def _connect(target: Target, timeout: float, cafile: str | None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    where = f"{target.host}:{target.port}"
    try:
        return await asyncio.wait_for(asyncio.open_connection(
            target.host, target.port, ssl=_tls_context(cafile) if target.secure else None,
            server_hostname=target.host if target.secure else None), timeout)
    except socket.gaierror:
        raise ConnectFailure("dns", f"cannot resolve host {target.host!r}") from None
    except ConnectionRefusedError:
        raise ConnectFailure("refused", f"connection refused by {where}: nothing listens "
                                        "there") from None
    except TimeoutError:
        raise ConnectFailure("timeout", f"no answer from {where} within {timeout:g} s") from None
    except ssl.SSLCertVerificationError as exc:
        raise ConnectFailure("tls", f"TLS certificate of {where} not accepted: "
                                    f"{exc.verify_message} (a private CA: --cafile FILE)") from None
    except ssl.SSLError as exc:
        hint = " (not a TLS server? try ws://)" if "WRONG_VERSION" in str(exc) else ""
        raise ConnectFailure("tls", f"TLS handshake with {where} failed: "
                                    f"{exc.reason or exc}{hint}") from None
    except OSError as exc:
        raise ConnectFailure("unreachable", f"cannot reach {where}: "
                                            f"{exc.strerror or exc}") from None


def _request(target: Target, key: str, *, origin: str | None, subprotocols: tuple[str, ...],
             connection: str, cookie: str | None) -> bytes:
    lines = [f"GET {target.resource} HTTP/1.1", f"Host: {target.host_header}",
             "Upgrade: websocket", f"Connection: {connection}", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13", f"User-Agent: {USER_AGENT}"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if subprotocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    if cookie is not None:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse(raw: bytes, target: Target) -> Handshake:
    head = raw.decode("latin-1")
    status_line, *header_lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    if not parts[0].startswith("HTTP/") or len(parts) < 2 or not parts[1].isdigit():
        raise ConnectFailure("not_http", f"{target.host}:{target.port} is not an HTTP server "
                                         f"(it answered {status_line[:60]!r})")
    headers = []
    for line in header_lines:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return Handshake(status=int(parts[1]), version=parts[0],
                     reason=parts[2] if len(parts) > 2 else "", headers=headers)


async def upgrade(target: Target, *, timeout: float, origin: str | None = None,
                  subprotocols: tuple[str, ...] = (), connection: str = "Upgrade",
                  cookie: str | None = None, cafile: str | None = None
                  ) -> tuple[Handshake, asyncio.StreamReader, asyncio.StreamWriter]:
    """Whatever the status, the answer and the open streams; the caller closes them."""
    started = time.monotonic()
    reader, writer = await _connect(target, timeout, cafile)
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        writer.write(_request(target, key, origin=origin, subprotocols=subprotocols,
                              connection=connection, cookie=cookie))
        remaining = max(0.1, timeout - (time.monotonic() - started))
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), remaining)
    except TimeoutError:
        writer.close()
        raise ConnectFailure("timeout", f"{target.host}:{target.port} accepted the connection "
                                        f"but did not answer the upgrade within {timeout:g} s"
                             ) from None
    except asyncio.IncompleteReadError as exc:
        writer.close()
        if exc.partial and not exc.partial.startswith(b"HTTP/"):
            raise ConnectFailure("not_http", f"{target.host}:{target.port} is not an HTTP "
                                             "server") from None
        raise ConnectFailure("closed", f"{target.host}:{target.port} closed the connection "
                                       "without answering the upgrade") from None
    except asyncio.LimitOverrunError:
        writer.close()
        raise ConnectFailure("not_http", "the HTTP answer's headers are over 64 KiB") from None
    except (ConnectionError, ssl.SSLError, OSError) as exc:
        writer.close()
        raise ConnectFailure("closed", f"{target.host}:{target.port} dropped the connection "
                                       f"during the upgrade: {exc}") from None
    try:
        hs = _parse(raw[:-4], target)
    except ConnectFailure:
        writer.close()
        raise
    hs.key = key
    hs.elapsed = time.monotonic() - started
    hs.tls = _tls_info(writer)
    return hs, reader, writer


def refusal(hs: Handshake, target: Target) -> ConnectFailure:
    """The sentence for a handshake that did not switch protocols."""
    status = f"HTTP {hs.status} {hs.reason}".strip()
    if 300 <= hs.status < 400:
        location = hs.header("Location") or "?"
        return ConnectFailure("redirect", f"{target.url} answers {status}, a redirect to "
                                          f"{location}: WebSocket clients do not follow "
                                          "redirects; use the final URL", hs)
    server = hs.header("Server")
    by = f" (Server: {server})" if server else ""
    if hs.status == 101:
        return ConnectFailure("handshake", f"{target.url} switched protocols with an invalid "
                                           "WebSocket handshake", hs)
    if hs.header("Upgrade") is None and hs.status in (200, 404, 400, 426):
        return ConnectFailure("http", f"{target.url} answers {status}{by}: not a WebSocket "
                                      "endpoint, or a proxy in front did not pass the upgrade",
                              hs)
    return ConnectFailure("http", f"{target.url} refused the WebSocket upgrade: {status}{by}",
                          hs)
