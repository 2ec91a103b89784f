"""The application's connect and disconnect hooks.

A connect hook runs after authentication and before ``welcome``; returning False
(or raising) refuses the connection. Disconnect hooks run once the connection is
gone; one that is a coroutine runs in the background, so a slow hook never holds up
the close of others.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from staywire.server.background import Background
from staywire.server.rpc import Caller, RpcContext

__all__ = ["ConnectHook", "Hooks"]

log = logging.getLogger("staywire.server")

ConnectHook = Callable[[RpcContext], Any]


class Hooks:
    __slots__ = ("connect", "disconnect", "_background")

    def __init__(self, background: Background) -> None:
        self.connect: list[ConnectHook] = []
        self.disconnect: list[ConnectHook] = []
        self._background = background

    async def allow(self, conn: Caller) -> bool:
        """Run every connect hook; False as soon as one refuses or fails."""
        ctx = RpcContext(conn)
        for hook in self.connect:
            try:
                result = hook(ctx)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.exception("on_connect hook failed conn=%s", conn.id)
                return False
            if result is False:
                return False
        return True

    def closed(self, conn: Caller) -> None:
        if not self.disconnect:
            return
        ctx = RpcContext(conn)
        for hook in self.disconnect:
            try:
                result = hook(ctx)
                if inspect.isawaitable(result):
                    self._background.spawn(result)
            except Exception:
                log.exception("on_disconnect hook failed conn=%s", conn.id)
