"""Verdicts: one ``Check`` per line of the report, the ``Report`` of one URL."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Check", "Report", "Status"]


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(slots=True)
class Check:
    id: str  # stable: "heartbeat.pings"; the JSON schema and --compare-direct key on it
    title: str
    status: Status
    saw: str  # what the doctor observed
    why: str  # why it matters, one line tied to the checklist
    fix: str | None = None  # the fix, nginx lines where the proxy is the likely cause
    data: dict[str, Any] = field(default_factory=dict)  # measured values, for --json

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "status": self.status.value,
                "saw": self.saw, "why": self.why, "fix": self.fix, "data": self.data}


@dataclass(slots=True)
class Report:
    url: str
    checks: list[Check] = field(default_factory=list)
    error: tuple[str, str] | None = None  # (kind, message) when no WebSocket could open
    preset: str | None = None
    preset_source: str | None = None  # "given" or "detected"
    duration: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.error is None

    def status_of(self, check_id: str) -> Status | None:
        return next((c.status for c in self.checks if c.id == check_id), None)

    def counts(self) -> dict[str, int]:
        return {s.value.lower(): sum(c.status is s for c in self.checks) for s in Status}

    def exit_code(self) -> int:
        """0: no FAIL; 1: a FAIL; 2: no WebSocket could be opened."""
        if self.error is not None:
            return 2
        return 1 if any(c.status is Status.FAIL for c in self.checks) else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "connected": self.connected,
            "error": None if self.error is None else
            {"kind": self.error[0], "message": self.error[1]},
            "preset": self.preset,
            "preset_source": self.preset_source,
            "duration_s": round(self.duration, 3),
            "options": self.options,
            "summary": self.counts(),
            "checks": [c.as_json() for c in self.checks],
            "exit_code": self.exit_code(),
        }
