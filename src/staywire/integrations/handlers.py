"""The handler registry every framework's proxy shares: one decorator per event.

A framework's ``StaywireProxy`` (``fastapi``, ``django``) inherits it and turns each
registered handler into its own kind of endpoint; an event with no handler answers
404, which Staywire reports as that request failing.

A batch of subscribes (docs/proxy.md, *Batches*) calls the handler once per item;
``item_answer`` encodes each, so that one item whose handler raised or returned the
wrong kind is answered ``internal`` (and logged with its traceback) while the rest of
its batch gets its own answers, as it would have one call each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from staywire.integrations.answers import Deny, encode
from staywire.protocol.codes import ErrorCode

__all__ = ["EVENTS", "Handler", "Handlers", "item_answer"]

log = logging.getLogger("staywire.integrations")

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


_INTERNAL = encode("subscribe", Deny(ErrorCode.INTERNAL))


def item_answer(event: str, answer: object) -> bytes:
    """One item's encoded answer in a batch; ``answer`` may be the exception its handler
    raised."""
    if isinstance(answer, BaseException):
        log.error("staywire %s handler failed for one item of a batch", event,
                  exc_info=answer)
        return _INTERNAL
    try:
        return encode(event, answer)
    except TypeError:
        log.exception("staywire %s handler: one item of a batch", event)
        return _INTERNAL
