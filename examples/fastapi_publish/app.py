"""Publish from a FastAPI request handler through Staywire's server API (docs/api.md).

    STAYWIRE_API_KEY=... API_URL=http://127.0.0.1:9765 uvicorn --app-dir examples/fastapi_publish app:app

``STAYWIRE_API_KEY`` is the variable the Staywire server reads its ``api_key`` from, so
both can share one environment; ``API_URL`` is the server's internal API port.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel

from staywire.api import ApiError, AsyncApiClient

API_URL = os.environ.get("API_URL", "http://127.0.0.1:9765")
API_KEY = os.environ["STAYWIRE_API_KEY"]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client for the app's life: it keeps its connections to Staywire alive.
    async with AsyncApiClient(API_URL, API_KEY) as staywire:
        app.state.staywire = staywire
        yield


app = FastAPI(lifespan=lifespan)


class Message(BaseModel):
    author: str
    text: str


@app.post("/rooms/{room}/messages", status_code=201)
async def post_message(room: str, message: Message, request: Request,
                       idempotency_key: str | None = Header(default=None)) -> dict[str, int]:
    # Store the message in your database first; then tell the room's subscribers.
    staywire: AsyncApiClient = request.app.state.staywire
    try:
        # The client's Idempotency-Key, passed on: a retried POST publishes once.
        reply = await staywire.publish(f"room:{room}", message.model_dump(),
                                       key=idempotency_key)
    except ApiError as exc:
        # 503 / no answer: Staywire or its broker is down, nothing was published.
        status = 503 if exc.code == "unavailable" else 400
        raise HTTPException(status, f"not published: {exc.reason}") from None
    return {"offset": reply.offset}
