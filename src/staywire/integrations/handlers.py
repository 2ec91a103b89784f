"""The handler registry every framework's proxy shares: one decorator per event.

A framework's ``StaywireProxy`` (``fastapi``, ``django``) inherits it and turns each
registered handler into its own kind of endpoint; an event with no handler answers
404, which Staywire reports as that request failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["EVENTS", "Handler", "Handlers"]

EVENTS = ("connect", "refresh", "subscribe", "publish", "rpc")

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)


class Handlers:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def on_connect(self, handler: H) -> H:
        return self._register("connect", handler)

    def on_refresh(self, handler: H) -> H:
        return self._register("refresh", handler)

    def on_subscribe(self, handler: H) -> H:
        return self._register("subscribe", handler)

    def on_publish(self, handler: H) -> H:
        return self._register("publish", handler)

    def on_rpc(self, handler: H) -> H:
        return self._register("rpc", handler)

    def _register(self, event: str, handler: H) -> H:
        self._handlers[event] = handler
        return handler

    def handler(self, event: str) -> Handler | None:
        """The handler of ``event``, or None when the application registered none."""
        return self._handlers.get(event)
