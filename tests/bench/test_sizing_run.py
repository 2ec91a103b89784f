"""``staywire bench --workloads sizing`` end to end on a tiny load: 1, 2 and 3 real nodes
on one real redis-server, every figure present, every process stopped by PID."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("rich")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


@pytest.mark.redis
def test_quick_sizing_measures_every_node_count(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed")
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = [
        sys.executable, "-m", "staywire", "bench", "--quick", "--workloads", "sizing",
        "-k", "30", "-m", "2", "--no-progress", "--json", str(out_json),
        "--markdown", str(out_md), "--chart", str(tmp_path / "bench.png"),
    ]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=150,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    sz = json.loads(out_json.read_text())["sizing"]
    rows = sz["summary"]
    for n in (1, 2, 3):
        for subs in (0, 6, 30):
            pub = rows[f"publish {n} {subs}"]
            assert pub["redis_us"] > 0 and pub["node_us"] > 0, (n, subs, sz["warnings"])
            assert pub["redis_publish_per_pub"] == 1.0  # one PUBLISH per publication
            assert rows[f"publish1 {n} {subs}"]["redis_us"] > 0
        for workload in ("fanout", "paced"):
            assert rows[f"{workload} {n} 30"]["node_us"] > 0, sz["warnings"]
    # Every delivery arrived, and the subscribers were spread over all three nodes.
    paced = next(r["metrics"] for r in sz["records"]
                 if r["workload"] == "paced" and r["nodes"] == 3
                 and r["metrics"]["subscribers"] == 30)
    assert paced["deliveries"] == paced["expected_deliveries"] == 30 * 2
    assert all(pct > 0 for pct in paced["node_cpu_pct"])
    assert sz["ratios"]["paced 3 vs 1 at 30"]["ratio"] > 0
    assert sz["model"]["publish1_redis_per_core"] > 0

    text = out_md.read_text()
    assert "## Sizing: CPU per delivery and per publication" in text
    assert "staywire bench --quick --workloads sizing" in text
    assert "## Sizing" in proc.stdout  # the tables are printed too

    pids = sz["meta"]["pids"]
    assert len(pids) >= 1 + (1 + 2 + 3) + 3  # redis-server, the nodes, a generator each
    alive = [pid for pid in pids if _alive(pid)]
    assert not alive, f"left running: {alive}"
