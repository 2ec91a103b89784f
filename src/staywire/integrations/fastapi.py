"""The five proxy endpoints as a FastAPI router: ``pip install staywire[fastapi]``.

::

    from fastapi import FastAPI
    from staywire.integrations.fastapi import StaywireProxy
    from staywire.integrations.answers import Disconnect, Identify, ProxyCall

    proxy = StaywireProxy(prefix="/staywire")

    @proxy.on_connect
    async def connect(call: ProxyCall) -> Identify | Disconnect:
        user = sessions.get(call.cookies.get("session", ""))
        return Identify(user, channels=[f"user:{user}"]) if user else Disconnect(4503)

    app = FastAPI()
    app.include_router(proxy.router)

and Staywire runs with ``connect_proxy_url = "http://127.0.0.1:8000/staywire/connect"``
(docs/fastapi.md). Each handler gets a ``ProxyCall`` and returns an answer of
``staywire.integrations.answers``; a handler may be sync or async. An event with no
handler answers 404, which Staywire reports as that request failing. A batch of
subscribes (``proxy_subscribe_batch``) calls the handler once per item; async ones
are awaited together, so a handler waiting on a database waits once per batch.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response

from staywire.integrations.answers import ProxyCall, decode_calls, encode, encode_batch
from staywire.integrations.handlers import EVENTS, Handler, Handlers, item_answer

__all__ = ["StaywireProxy"]

log = logging.getLogger("staywire.integrations")

class StaywireProxy(Handlers):
    def __init__(self, prefix: str = "/staywire") -> None:
        super().__init__()
        self.router = APIRouter(prefix=prefix)
        for event in EVENTS:
            self.router.add_api_route(f"/{event}", self._endpoint(event), methods=["POST"],
                                      include_in_schema=False)

    def _endpoint(self, event: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            handler = self.handler(event)
            if handler is None:
                return Response(b"no handler\n", status_code=404, media_type="text/plain")
            try:
                calls, batched = decode_calls(event, await request.body())
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                return Response(f"{exc}\n".encode(), status_code=400, media_type="text/plain")
            if not batched:
                answer = handler(calls[0])
                if inspect.isawaitable(answer):
                    answer = await answer
                return Response(encode(event, answer), media_type="application/json")
            answers = await _each(handler, calls)
            return Response(encode_batch(event, [item_answer(event, a) for a in answers]),
                            media_type="application/json")

        return endpoint


async def _each(handler: Handler, calls: list[ProxyCall]) -> list[Any]:
    """The handler's answer to each call, or the exception it raised for that one."""
    answers: list[Any] = []
    pending: dict[int, Awaitable[Any]] = {}
    for i, call in enumerate(calls):
        try:
            answer = handler(call)
        except Exception as exc:  # noqa: BLE001 - that item's answer (handlers.item_answer)
            answer = exc
        if inspect.isawaitable(answer):
            pending[i] = answer
        answers.append(answer)
    if pending:
        done = await asyncio.gather(*pending.values(), return_exceptions=True)
        for i, answer in zip(pending, done, strict=True):
            answers[i] = answer
    return answers
