"""``ApiClient``: the server API from blocking code (Django views, scripts, Celery tasks).

Standard library only (``http.client``): one keep-alive connection, shared by threads
under a lock. A connection idle longer than ``_IDLE`` is replaced before use, because
the server closes idle ones after 10 s: reusing one then could lose a request.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import msgspec

from staywire.api import calls
from staywire.api import schema as s
from staywire.api.calls import Batch, Call
from staywire.exceptions import ApiConnectionError

__all__ = ["ApiClient"]

R = TypeVar("R", bound=msgspec.Struct)
_IDLE = 5.0


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of ``http://host:port[/prefix]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL of the API port, got {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


class ApiClient:
    """``ApiClient("http://127.0.0.1:9765", api_key)``; every method returns its typed reply
    (``staywire.api.schema``) or raises ``ApiError`` (``ApiConnectionError`` without one)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._scheme, self._host, self._port, self._prefix = split_url(url)
        self._headers = {"Authorization": f"Bearer {api_key}",
                         "Content-Type": "application/json"}
        self._timeout = timeout
        self._ssl = ssl_context
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def call(self, call: Call[R]) -> R:
        body = calls.encode_body(call)
        with self._lock:
            conn = self._connection()
            try:
                headers = self._headers if call.raw is None else {
                    **self._headers, "Content-Type": calls.content_type(call)}
                conn.request("POST", f"{self._prefix}{calls.target(call)}", body, headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conn = None
                raise ApiConnectionError(f"{call.method}: {exc or type(exc).__name__}") from None
            self._last_used = time.monotonic()
            if resp.will_close:
                conn.close()
                self._conn = None
        return calls.decode_reply(call, resp.status, data)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None and time.monotonic() - self._last_used > _IDLE:
            self._conn.close()
            self._conn = None
        if self._conn is None:
            if self._scheme == "https":
                self._conn = http.client.HTTPSConnection(self._host, self._port,
                                                         timeout=self._timeout,
                                                         context=self._ssl)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=self._timeout)
        return self._conn

    # -- the methods (docs/api.md) --------------------------------------------------------

    def publish(self, channel: str, data: Any, *, key: str | None = None) -> s.PublishReply:
        return self.call(calls.publish(channel, data, key))

    def broadcast(self, channels: list[str], data: Any, *, key: str | None = None
                  ) -> s.BroadcastReply:
        return self.call(calls.broadcast(channels, data, key))

    def history(self, channel: str, *, since: tuple[str, int] | None = None,
                limit: int | None = None, reverse: bool = False) -> s.HistoryReply:
        return self.call(calls.history(channel, since, limit, reverse))

    def presence(self, channel: str, *, limit: int | None = None) -> s.PresenceReply:
        return self.call(calls.presence(channel, limit))

    def presence_stats(self, channel: str) -> s.PresenceStatsReply:
        return self.call(calls.presence_stats(channel))

    def channels(self, pattern: str, *, limit: int | None = None) -> s.ChannelsReply:
        return self.call(calls.channels(pattern, limit))

    def info(self) -> s.InfoReply:
        return self.call(calls.info())

    def disconnect(self, user: str, *, code: int | None = None, reason: str | None = None,
                   reconnect: bool | None = None, client: str | None = None
                   ) -> s.DisconnectReply:
        return self.call(calls.disconnect(user, code=code, reason=reason, reconnect=reconnect,
                                          client=client))

    def refresh(self, user: str, expire_at: float | None) -> s.RefreshReply:
        return self.call(calls.refresh(user, expire_at))

    def subscribe(self, user: str, channel: str) -> s.SubscribeReply:
        """Join every connection of ``user``, on every node, to ``channel`` server-side."""
        return self.call(calls.subscribe(user, channel))

    def unsubscribe(self, user: str, channel: str) -> s.UnsubscribeReply:
        """Take every connection of ``user``, on every node, out of ``channel``."""
        return self.call(calls.unsubscribe(user, channel))

    def batch(self, batch: Batch) -> list[Any]:
        """One typed reply, or the ``ApiError`` it failed with, per command of ``batch``."""
        return batch.results(self.call(batch.call()))
