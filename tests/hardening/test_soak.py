"""The short soak run CI can afford (`make soak` is the 30-minute, 5,000-connection one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # runs first (tests/conftest.py)


def test_short_soak_keeps_rss_and_descriptors_flat(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--connections",
                           "1000", "--minutes", "0.5", "--sample", "2", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["messages_received"] > 10_000, proc.stdout + proc.stderr
    assert result["fds_last"] - result["fds_first"] in (-2, -1, 0, 1, 2), result
    assert result["rss_growth"] < 0.10, result
    assert proc.returncode == 0 and result["flat"], proc.stdout + proc.stderr
