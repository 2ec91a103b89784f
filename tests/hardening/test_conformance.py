"""Autobahn|Testsuite cases 1-10 against the echo endpoint: 0 FAILED.

Runs `scripts/conformance.sh` (about 30 s once its Python 2.7 environment exists, a
minute more the first time). Where no Python 2.7 exists the script says so and this
check alone is skipped."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_autobahn_fuzzingclient_cases_1_to_10_have_no_failure(tmp_path: Path) -> None:
    out = tmp_path / "conformance.md"
    env = dict(os.environ, CONFORMANCE_OUT=str(out))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "conformance.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if "no Python 2.7" in proc.stdout:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "FAILED: 0" in text and "| OK |" in text
