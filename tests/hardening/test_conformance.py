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
pytestmark = pytest.mark.slow  # runs first (tests/conftest.py)


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
    # The client as well: 7.1.2 (two close frames in one read) failed inside picows' parser
    # until the client read through a CloseFence (staywire/protocol/framing.py).
    client = client_out.read_text()
    assert "FAILED: 0" in client and "| OK |" in client, client
