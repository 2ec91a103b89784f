"""--flood only: a bounded burst of small messages, to see whether the server
rate-limits one connection. Without the flag nothing is sent."""

from __future__ import annotations

from staywire.doctor.context import Context
from staywire.doctor.frames import OP_PING, OP_TEXT, encode
from staywire.doctor.model import Check, Status
from staywire.doctor.probe import Closed, Message, Pong

__all__ = ["check_flood"]

_WHY = "One client can flood with messages: rate limit per connection (checklist: Security)"
_HINTS = ("rate", "too many", "slow down", "throttl", "429")
_WAIT = 5.0


async def check_flood(ctx: Context) -> Check:
    title = "Per-connection rate limit"
    opts = ctx.options
    if not opts.flood:
        return Check("limits.flood", title, Status.SKIP, "not run: it sends a burst of "
                     f"{opts.flood_count} messages (use --flood)", _WHY)
    message = ctx.preset.probe_message(64)
    limited = 0
    closed: Closed | None = None
    pong = False
    async with ctx.connect("flood") as probe:
        # One write for the whole burst: the server sees it as fast as TCP brings it.
        burst = b"".join(encode(OP_TEXT, message) for _ in range(opts.flood_count))
        if await probe.send_raw(burst):
            await probe.send(OP_PING, b"doctor-flood")
        deadline = probe.elapsed() + _WAIT
        while (remaining := deadline - probe.elapsed()) > 0:
            event = await probe.recv(remaining)
            if isinstance(event, Message):
                text = event.data.decode("utf-8", "replace").lower()
                limited += any(h in text for h in _HINTS)
            elif isinstance(event, Pong) and event.data == b"doctor-flood":
                pong = True
                if limited:
                    break
                # Replies may trail the pong a little; give them a moment.
                deadline = min(deadline, probe.elapsed() + 0.5)
            elif isinstance(event, Closed):
                closed = event
                break
    data = {"sent": opts.flood_count, "rate_limited_replies": limited,
            "closed_code": closed.code if closed else None, "answered": pong}
    if closed is not None and closed.frame and closed.code is not None:
        return Check("limits.flood", title, Status.PASS,
                     f"{opts.flood_count} messages in one burst: {limited} rate-limit "
                     f"replies, then {closed.describe()}", _WHY, None, data)
    if limited:
        return Check("limits.flood", title, Status.PASS,
                     f"{opts.flood_count} messages in one burst: {limited} rate-limit "
                     "replies", _WHY, None, data)
    saw = (f"{opts.flood_count} messages in one burst, all taken" if closed is None
           else f"{opts.flood_count} messages in one burst, then {closed.describe()}")
    return Check("limits.flood", title, Status.WARN, saw, _WHY,
                 "limit messages and bytes per connection (token bucket), answer or close "
                 "with a 4xxx code (nginx limit_req covers handshakes only)", data)
