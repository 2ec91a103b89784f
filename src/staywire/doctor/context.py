"""What every check shares: the options, the URL, the preset, a cap on open
connections, the log of the closes the server sent, and the progress display."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass

from staywire.doctor.handshake import Handshake, refusal, upgrade
from staywire.doctor.presets import Announcement, Preset, generic
from staywire.doctor.probe import Closed, Message, Probe
from staywire.doctor.progress import NoProgress, Waits
from staywire.doctor.target import Target

__all__ = ["MAX_CONNECTIONS", "QUICK_WAIT", "Context", "Options"]

# "Never more than a few connections at once" (issue 15): the heartbeat watchers, a
# dead client and a limits probe.
MAX_CONNECTIONS = 3
# Without --slow, no wait lasts longer than this: the values the server announces fill
# in for what would take longer to watch (docs/doctor.md, "quick and slow").
QUICK_WAIT = 5.0
_READY_WAIT = 3.0  # for the answer to the preset's hello
_READ_SLACK = 64 * 1024  # the read bound: a probe's echo plus framing


@dataclass(frozen=True, kw_only=True)
class Options:
    subprotocol: str | None = None
    preset: str = "auto"  # auto, none, or a name of presets.PRESETS
    app_ping: str | None = None
    app_pong: str | None = None
    idle_timeout: float = 60.0
    max_wait: float = 90.0
    max_probe_size: int = 16 * 1024 * 1024
    slow: bool = False
    flood: bool = False
    flood_count: int = 1000
    origin: str | None = None  # the origin of the application's own pages
    cookie: str | None = None
    cafile: str | None = None
    connect_timeout: float = 10.0

    @property
    def wait_cap(self) -> float:
        return self.max_wait if self.slow else min(self.max_wait, QUICK_WAIT)

    def as_json(self) -> dict[str, object]:
        return {"subprotocol": self.subprotocol, "preset": self.preset,
                "idle_timeout": self.idle_timeout, "max_wait": self.max_wait,
                "max_probe_size": self.max_probe_size, "slow": self.slow,
                "flood": self.flood, "origin": self.origin}


class Context:
    def __init__(self, target: Target, options: Options, waits: Waits | None = None) -> None:
        self.target = target
        self.options = options
        self.waits: Waits = waits or NoProgress()
        self.preset: Preset = generic()
        self.preset_source: str | None = None
        self.announcement: Announcement | None = None
        self.first_message: str | None = None
        self.base: Handshake | None = None  # the first successful handshake
        self.closes: list[tuple[str, Closed]] = []  # (what provoked it, the close)
        self.handshake_times: list[float] = []
        self.set_cookie = False  # some handshake answer set a cookie
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    @property
    def subprotocols(self) -> tuple[str, ...]:
        name = self.options.subprotocol or self.preset.subprotocol
        return (name,) if name else ()

    @property
    def takes_cookies(self) -> bool:
        return self.set_cookie or self.options.cookie is not None

    def median_handshake(self) -> float:
        return statistics.median(self.handshake_times) if self.handshake_times else 0.0

    async def handshake(self, *, origin: str | None = None, subprotocols: tuple[str, ...] = (),
                        connection: str = "Upgrade") -> Handshake:
        """A handshake whatever its answer (for the refusals the checks look for)."""
        async with self._slots:
            hs, _, writer = await upgrade(
                self.target, timeout=self.options.connect_timeout, origin=origin,
                subprotocols=subprotocols, connection=connection, cookie=self.options.cookie,
                cafile=self.options.cafile)
            writer.close()
        self._note(hs)
        return hs

    @contextlib.asynccontextmanager
    async def connect(self, label: str, *, answer_pings: bool = True,
                      hello: bool = True) -> AsyncIterator[Probe]:
        """An open WebSocket; a refusal raises ConnectFailure. ``label`` names what the
        probe provokes, so the closes check can judge the code the server chose."""
        opts = self.options
        async with self._slots:
            hs, reader, writer = await upgrade(
                self.target, timeout=opts.connect_timeout, origin=opts.origin,
                subprotocols=self.subprotocols, cookie=opts.cookie, cafile=opts.cafile)
            self._note(hs)
            if hs.status != 101 or not hs.accept_ok:
                writer.close()
                raise refusal(hs, self.target)
            probe = Probe(hs, reader, writer, max_size=opts.max_probe_size + _READ_SLACK,
                          answer_pings=answer_pings, preset=self.preset)
            try:
                if hello:
                    await self._hello(probe)
                yield probe
            finally:
                if probe.closed is None:
                    await probe.close()
                closed = probe.closed
                if closed is not None and closed.by_server and closed.frame:
                    self.closes.append((label, closed))

    async def _hello(self, probe: Probe) -> None:
        for text in self.preset.hello:
            await probe.send_text(text)
        ready = self.preset.ready
        if ready is None:
            return
        deadline = probe.elapsed() + _READY_WAIT
        while (remaining := deadline - probe.elapsed()) > 0:
            event = await probe.recv(remaining)
            if isinstance(event, Closed) or (
                    isinstance(event, Message) and ready(event.data.decode("utf-8", "replace"))):
                return

    def _note(self, hs: Handshake) -> None:
        if hs.status == 101:
            self.handshake_times.append(hs.elapsed)
        if hs.header("Set-Cookie") is not None:
            self.set_cookie = True

