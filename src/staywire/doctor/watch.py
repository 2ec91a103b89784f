"""Hold a connection open and watch what the server does: its pings, and how the
connection ends. The long waits of the heartbeat and idle checks, bounded in time and
shown on the progress display."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from staywire.doctor.context import Context
from staywire.doctor.probe import Closed, Ping

__all__ = ["Watch", "watch"]

_TICK = 0.25  # progress display refresh


@dataclass(slots=True)
class Watch:
    planned: float  # seconds the watch was allowed
    waited: float = 0.0
    pings: list[Ping] = field(default_factory=list)
    closed: Closed | None = None  # how it ended, when it ended before the watch did

    @property
    def ran(self) -> bool:
        return self.planned > 0

    def interval(self) -> float | None:
        """Seconds between pings: the median gap, or the first ping's time since the
        upgrade when only one came (servers start the timer at the upgrade)."""
        times = [p.at for p in self.pings]
        if len(times) >= 2:
            gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
            return gaps[len(gaps) // 2]
        return times[0] if times else None

    def kind(self) -> str:
        kinds = {"application" if p.app else "protocol-level ping frames" for p in self.pings}
        return " and ".join(sorted(kinds))


async def watch(ctx: Context, label: str, seconds: float, *, answer: bool, doing: str,
                enough_pings: int | None = None, at_least: float = 0.0) -> Watch:
    """Watch for up to ``seconds``; stop early once the connection ends, or once
    ``enough_pings`` pings came and ``at_least`` seconds passed."""
    result = Watch(planned=seconds)
    if seconds <= 0:
        return result
    async with ctx.connect(label, answer_pings=answer) as probe:
        with ctx.waits.wait(f"{label}: {doing}", seconds) as update:
            deadline = time.monotonic() + seconds
            while (remaining := deadline - time.monotonic()) > 0:
                event = await probe.recv(min(_TICK, remaining))
                update(probe.elapsed())
                if isinstance(event, Ping):
                    result.pings.append(event)
                elif isinstance(event, Closed):
                    result.closed = event
                    break
                if (enough_pings is not None and len(result.pings) >= enough_pings
                        and probe.elapsed() >= at_least):
                    break
            result.waited = probe.elapsed()
    return result
