"""Every close frame the server sent during the run: does it carry a code and a
reason, and is the code one the checklist would use?"""

from __future__ import annotations

from staywire.doctor.context import Context
from staywire.doctor.model import Check, Status

__all__ = ["check_closes", "judge"]

_WHY = ("Always send a close code and reason; 1011 for server errors, 4000-4999 for the "
        "application (checklist: Close Codes)")
# What the doctor provoked: a close in answer to an error must not say "normal" (1000).
_ERRORS = {"oversize", "utf8", "flood", "dead client"}
_NEVER_SENT = {1004, 1005, 1006, 1015}  # RFC 6455 section 7.4.1: reserved, never on the wire


def judge(label: str, code: int | None, reason: str | None) -> tuple[Status, str]:
    if code is None:
        return Status.FAIL, "a close frame without a code"
    if code < 1000 or code in _NEVER_SENT or 1016 <= code < 3000 or code > 4999:
        return Status.FAIL, f"code {code}, which must never be sent (RFC 6455 section 7.4)"
    if code == 1000 and label in _ERRORS:
        return Status.WARN, f"1000 (normal) in answer to an error ({label})"
    if not reason:
        return Status.WARN, f"code {code} without a reason"
    return Status.PASS, f"{code} {reason!r}"


def check_closes(ctx: Context) -> Check:
    title = "Close codes and reasons"
    if not ctx.closes:
        return Check("closes", title, Status.SKIP, "the server sent no close frame", _WHY)
    verdicts = [(label, c.code, *judge(label, c.code, c.reason)) for label, c in ctx.closes]
    worst = Status.FAIL if any(v[2] is Status.FAIL for v in verdicts) else \
        Status.WARN if any(v[2] is Status.WARN for v in verdicts) else Status.PASS
    saw = "; ".join(f"{label}: {text}" for label, _, _, text in verdicts)
    data = {"closes": [{"after": label, "code": c.code, "reason": c.reason}
                       for label, c in ctx.closes]}
    fix = None if worst is Status.PASS else (
        "close with a code and a short reason: 1009 too big, 1007 bad text, 1011 server "
        "error, 4000-4999 for the application's own reasons")
    return Check("closes", title, worst, saw, _WHY, fix, data)
