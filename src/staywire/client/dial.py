"""One connection attempt, from the WebSocket upgrade to the server's ``welcome``.

The attempt counts as opened only once welcomed: no request goes out before that,
and the reconnect loop counts a connection that closes first as a failed attempt
(its retry budget is not reset).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from picows import WSError

from staywire.client import messages as m
from staywire.client.auth import AuthMode, connect_target
from staywire.client.link import ABNORMAL, OFFER, Link, open_link
from staywire.client.state import CLIENT_CLOSED, CloseInfo

__all__ = ["Dialer"]


class Dialer:
    """Opens connections; ``link`` is the one waiting for its welcome, if any."""

    def __init__(
        self,
        *,
        auth: AuthMode,
        cookie_name: str,
        client_id: str | None,
        connect_timeout: float | None,
        write_buffer_limits: tuple[int, int] | None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._auth = auth
        self._cookie_name = cookie_name
        self._client_id = client_id
        self._connect_timeout = connect_timeout
        self._write_buffer_limits = write_buffer_limits
        self._ssl_context = ssl_context
        self.link: Link | None = None  # a connection waiting for its welcome
        self._welcome_waiter: asyncio.Future[m.Welcome] | None = None

    def welcomed(self, welcome: m.Welcome) -> bool:
        """Hand a ``welcome`` to the attempt waiting for it; False if none waits."""
        if self._welcome_waiter is not None and not self._welcome_waiter.done():
            self._welcome_waiter.set_result(welcome)
            return True
        return False

    async def dial(
        self,
        url: str,
        *,
        token: str | None,
        session: str | None,
        on_text: Callable[[Link, bytes], None],
        on_writable: Callable[[], None],
        extra_headers: Mapping[str, str] | None = None,
        on_binary: Callable[[Link, bytes], None] | None = None,
    ) -> tuple[Link, m.Welcome] | CloseInfo:
        """Connect to ``url`` with ``token`` (resuming ``session``) and the application's
        ``extra_headers``: the welcomed link and its welcome, or how the attempt failed."""
        loop = asyncio.get_running_loop()
        url, headers = connect_target(
            url,
            token=token,
            mode=self._auth,
            cookie_name=self._cookie_name,
            session=session,
            client_id=self._client_id,
            extra=extra_headers,
        )
        waiter: asyncio.Future[m.Welcome] = loop.create_future()
        self._welcome_waiter = waiter
        link: Link | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                link = await open_link(
                    url,
                    on_text=on_text,
                    on_binary=on_binary,
                    subprotocol=OFFER,
                    on_writable=on_writable,
                    headers=headers,
                    timeout=self._connect_timeout,
                    write_buffer_limits=self._write_buffer_limits,
                    ssl_context=self._ssl_context,
                )
                self.link = link
                if token is not None and self._auth is AuthMode.FIRST_MESSAGE:
                    link.send(m.encode_auth(token))
                pending: set[asyncio.Future[Any]] = {waiter, link.closed}
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            if link is not None:
                link.abort(ABNORMAL, "no welcome in time")
            return CloseInfo(ABNORMAL, f"connect timeout ({self._connect_timeout:g} s)")
        except (OSError, WSError) as exc:
            return CloseInfo(ABNORMAL, f"connect failed: {_describe(exc)}")
        except asyncio.CancelledError:
            if link is not None:
                link.abort(CLIENT_CLOSED.code, CLIENT_CLOSED.reason)
            raise
        finally:
            self._welcome_waiter = None
            self.link = None
            if not waiter.done():
                waiter.cancel()
        if link.closed.done() or waiter.cancelled():
            link.abort(ABNORMAL, "closed before welcome")
            return await link.closed
        return link, waiter.result()


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status", None)
    if status is not None:
        return f"HTTP {int(status)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
