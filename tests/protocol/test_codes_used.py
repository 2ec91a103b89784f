"""Every error code the protocol defines is one the server can send, and every close code
it defines is sent or documented as never sent: a code nobody sends is a dead promise that
clients would handle for nothing (``already_authenticated`` was one)."""

from __future__ import annotations

import re
from pathlib import Path

from staywire.protocol.codes import CloseCode, ErrorCode

SRC = Path(__file__).resolve().parents[2] / "src" / "staywire"
SENDERS = [p for sub in ("server", "protocol", "brokers", "client") for p in (SRC / sub).rglob("*.py")
           if p.name != "codes.py"]


def _used(enum_name: str) -> set[str]:
    text = "\n".join(p.read_text() for p in SENDERS)
    return set(re.findall(rf"\b{enum_name}\.([A-Z_]+)\b", text))


def test_every_error_code_is_sent_somewhere() -> None:
    assert {c.name for c in ErrorCode} - _used("ErrorCode") == set()


def test_every_close_code_is_sent_or_marked_never_sent() -> None:
    source = (SRC / "protocol" / "codes.py").read_text()
    never = set(re.findall(r"^\s+([A-Z_]+) = \d+\s+#.*never sent", source, re.M))
    # Close codes the server sends by number through the transport or the framing layer.
    unsent = {c.name for c in CloseCode} - _used("CloseCode") - never
    assert unsent == set(), f"defined but never sent: {sorted(unsent)}"
