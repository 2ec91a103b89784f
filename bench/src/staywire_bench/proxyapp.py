"""The application backend of the ``proxy`` workload: FastAPI under uvicorn, one worker.

What a real backend does on each call, and no more: read the session cookie that
Staywire forwards, look the session up, and answer through
``staywire.integrations.fastapi`` (the ready-made router users deploy). The sessions
are made up front (``sw_session=s<N>`` is user ``u<N>``), so that the figure is the
cost of the call, not of a database this machine does not have.

Started as ``python -m uvicorn staywire_bench.proxyapp:app --workers 1 --http httptools
--loop uvloop`` (``staywire_bench.proxyrun``).
"""

from __future__ import annotations

from fastapi import FastAPI

from staywire.integrations.answers import Allow, Deny, Disconnect, Identify, ProxyCall
from staywire.integrations.fastapi import StaywireProxy
from staywire_bench.protocols import CHANNEL

__all__ = ["COOKIE", "SESSIONS", "app", "cookie_for"]

COOKIE = "sw_session"
#: Sessions the backend knows: enough for the largest run (``-k``) with room to spare.
SESSIONS: dict[str, str] = {f"s{i}": f"u{i}" for i in range(200_000)}

proxy = StaywireProxy(prefix="/staywire")


def cookie_for(index: int) -> str:
    """The ``Cookie`` header of connection ``index`` (the generator's side)."""
    return f"{COOKIE}=s{index}"


@proxy.on_connect
def connect(call: ProxyCall) -> Identify | Disconnect:
    user = SESSIONS.get(call.cookies.get(COOKIE, ""))
    if user is None:
        return Disconnect(4503, "log in first")
    return Identify(user)


@proxy.on_subscribe
def subscribe(call: ProxyCall) -> Allow | Deny:
    if call.channel == CHANNEL or call.channel == f"user:{call.user}":
        return Allow()
    return Deny("forbidden", "not yours")


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
app.include_router(proxy.router)
