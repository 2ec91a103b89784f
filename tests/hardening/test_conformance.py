"""Autobahn|Testsuite cases 1-10: the fuzzing client against the server's echo endpoint,
and the fuzzing server against the Python client's connection layer.

Runs `scripts/conformance.sh` (about 30 s once its Python 2.7 environment exists, a
minute more the first time). Where no Python 2.7 exists the script says so and this
check alone is skipped."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_autobahn_cases_1_to_10_against_the_server_and_the_client(tmp_path: Path) -> None:
    out = tmp_path / "conformance.md"
    client_out = tmp_path / "conformance-client.md"
    env = dict(os.environ, CONFORMANCE_OUT=str(out), CONFORMANCE_CLIENT_OUT=str(client_out))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "conformance.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if "no Python 2.7" in proc.stdout:
        pytest.skip(proc.stdout.strip())
    text = out.read_text()
    assert "FAILED: 0" in text and "| OK |" in text, text
    # The client: 0 FAILED but for 7.1.2 (two close frames in one read). picows parses
    # the next frame before delivering the current one, and a second close frame fails
    # that look-ahead before the first one reaches the listener; it is picows' parser,
    # below anything Staywire sees (docs/conformance-client.md).
    client = client_out.read_text()
    assert "| OK |" in client, client
    assert "FAILED: 0" in client or "FAILED: 1 (7.1.2)" in client, client
