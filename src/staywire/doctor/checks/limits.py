"""Message limits: the largest message accepted (sizes doubling from 1 KiB up to
--max-probe-size, stopping at the first refusal), how the refusal is made (1009, or
the connection just dies), and whether invalid UTF-8 in a text frame gets 1007.

Each probe message is the preset's harmless message padded with JSON whitespace to the
exact size, followed by a ping frame. A pong alone does not prove the message was
accepted: many servers answer pings in the frame layer before the application has seen
the message, and refuse it a moment later. So a size counts as accepted only when the
connection is still open after a settle time and a second ping is answered."""

from __future__ import annotations

from dataclasses import dataclass

from staywire.doctor.context import Context
from staywire.doctor.frames import OP_PING, OP_TEXT
from staywire.doctor.model import Check, Status
from staywire.doctor.probe import Closed, Pong, Probe

__all__ = ["check_limits", "probe_sizes"]

_FIRST = 1024
_UTF8_GRACE = 1.5
_SETTLE = 0.1  # seconds after the first pong in which a refusal still counts
_WHY_SIZE = ("Huge messages block the event loop and memory: set a max message size "
             "server-side (checklist: Message Handling, Common Mistakes)")
_WHY_OVERSIZE = ("A refusal with 1009 and a reason tells the client what went wrong; a "
                 "dropped connection looks like a network fault (checklist: Close Codes)")
_WHY_UTF8 = ("Text frames must be UTF-8 (RFC 6455 section 8.1, close 1007); validate every "
             "message, malicious clients send anything (checklist: Security)")


def probe_sizes(limit: int) -> list[int]:
    sizes = []
    size = _FIRST
    while size < limit:
        sizes.append(size)
        size *= 2
    sizes.append(limit)
    return sizes


@dataclass(slots=True)
class _Answer:
    ok: bool = False
    closed: Closed | None = None


async def _confirm(probe: Probe, tag: bytes, timeout: float) -> _Answer:
    """Send a ping frame and wait for its pong (messages in between are skipped)."""
    if not await probe.send(OP_PING, tag):
        return _Answer(closed=probe.closed)
    deadline = probe.elapsed() + timeout
    while (remaining := deadline - probe.elapsed()) > 0:
        event = await probe.recv(remaining)
        if isinstance(event, Pong) and event.data == tag:
            return _Answer(ok=True)
        if isinstance(event, Closed):
            return _Answer(closed=event)
    return _Answer()


async def _accepted(probe: Probe, tag: bytes, timeout: float) -> _Answer:
    """The server read the message and, a settle time later, still answers pings."""
    first = await _confirm(probe, tag + b"-a", timeout)
    if not first.ok:
        return first
    deadline = probe.elapsed() + _SETTLE
    while (remaining := deadline - probe.elapsed()) > 0:
        event = await probe.recv(remaining)
        if isinstance(event, Closed):
            return _Answer(closed=event)
    return await _confirm(probe, tag + b"-b", timeout)


def _fmt(n: int) -> str:
    return f"{n // (1 << 20)} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else \
        f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} bytes"


async def check_limits(ctx: Context) -> list[Check]:
    return [*await _sizes(ctx), await _utf8(ctx)]


async def _sizes(ctx: Context) -> list[Check]:
    limit = ctx.options.max_probe_size
    largest = 0
    refused: tuple[int, Closed | None] | None = None  # size, how (None: no answer)
    async with ctx.connect("oversize") as probe:
        for i, size in enumerate(probe_sizes(limit)):
            if not await probe.send(OP_TEXT, ctx.preset.probe_message(size)):
                refused = (size, probe.closed)
                break
            answer = await _accepted(probe, f"doctor-size-{i}".encode(), 5 + size / (1 << 20))
            if not answer.ok:
                refused = (size, answer.closed)
                break
            largest = size
    data: dict[str, object] = {"largest_accepted": largest, "max_probe_size": limit,
                               "refused_at": refused[0] if refused else None}
    title = "Largest message accepted"
    if refused is None:
        size_check = Check("limits.max_message", title, Status.WARN,
                           f"every size up to --max-probe-size ({_fmt(limit)}) accepted: no "
                           "limit found", _WHY_SIZE,
                           "set a limit (websockets: max_size; ws: maxPayload; Staywire: "
                           "--max-message-size)", data)
        return [size_check, Check("limits.oversize", "Oversized message closed with 1009",
                                  Status.SKIP, "no size was refused", _WHY_OVERSIZE)]
    size, closed = refused
    size_check = Check("limits.max_message", title, Status.PASS,
                       f"largest accepted {_fmt(largest)}; {_fmt(size)} refused", _WHY_SIZE,
                       None, data)
    return [size_check, _oversize(size, closed)]


def _oversize(size: int, closed: Closed | None) -> Check:
    title = "Oversized message closed with 1009"
    data = {"size": size, "code": closed.code if closed else None,
            "reason": closed.reason if closed else None,
            "close_frame": bool(closed and closed.frame)}
    fix = "close with 1009 and a reason (the WebSocket library's max size option does)"
    if closed is None:
        return Check("limits.oversize", title, Status.WARN,
                     f"after a {_fmt(size)} message the server stopped answering pings",
                     _WHY_OVERSIZE, fix, data)
    if closed.frame and closed.code == 1009:
        return Check("limits.oversize", title, Status.PASS,
                     f"{_fmt(size)}: {closed.describe()}", _WHY_OVERSIZE, None, data)
    if closed.frame and closed.code is not None:
        return Check("limits.oversize", title, Status.WARN,
                     f"{_fmt(size)}: {closed.describe()}, not 1009", _WHY_OVERSIZE, fix, data)
    return Check("limits.oversize", title, Status.FAIL,
                 f"{_fmt(size)}: {closed.describe()}", _WHY_OVERSIZE, fix, data)


async def _utf8(ctx: Context) -> Check:
    title = "Invalid UTF-8 closed with 1007"
    # A valid JSON shape around an invalid byte sequence (0xC3 0x28: a lead byte with no
    # continuation), so only the encoding is wrong.
    payload = b'{"type":"\xc3\x28"}'
    async with ctx.connect("utf8") as probe:
        await probe.send(OP_TEXT, payload)
        answer = await _confirm(probe, b"doctor-utf8", 5.0)
        if answer.ok:
            # A server may answer the ping in its protocol layer before its application
            # decodes the text (websockets does): give the close a moment to follow.
            deadline = probe.elapsed() + _UTF8_GRACE
            while probe.closed is None and (remaining := deadline - probe.elapsed()) > 0:
                await probe.recv(remaining)
            if probe.closed is not None:
                answer = _Answer(closed=probe.closed)
    closed = answer.closed
    data = {"code": closed.code if closed else None, "close_frame": bool(closed and
                                                                         closed.frame),
            "still_open": answer.ok}
    fix = "validate UTF-8 of text frames and close with 1007 (RFC 6455 section 8.1)"
    if answer.ok:
        return Check("limits.utf8", title, Status.FAIL,
                     "a text frame with invalid UTF-8 was taken; the connection stayed open",
                     _WHY_UTF8, fix, data)
    if closed is None:
        return Check("limits.utf8", title, Status.WARN,
                     "no answer within 5 s after invalid UTF-8", _WHY_UTF8, fix, data)
    if closed.frame and closed.code == 1007:
        return Check("limits.utf8", title, Status.PASS, closed.describe(), _WHY_UTF8, None,
                     data)
    return Check("limits.utf8", title, Status.WARN, f"{closed.describe()}, not 1007",
                 _WHY_UTF8, fix, data)
