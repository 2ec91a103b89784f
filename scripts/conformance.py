"""Run Autobahn's fuzzing client against a Staywire echo endpoint; summarise in docs/.

wstest exits 0 even when cases fail, so the verdict is read from
reports/servers/index.json. Called by scripts/conformance.sh (`make conformance`).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.servers import ServerProcess  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wstest", required=True)
    ap.add_argument("--cases", default="1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*")
    ap.add_argument("--out", default=str(ROOT / "docs" / "conformance.md"))
    args = ap.parse_args()
    srv = ServerProcess({
        "echo_path": "/echo",
        "max_message_size": 16 * 1024 * 1024 + 1024,  # cases 9.x send 16 MiB messages
        "max_send_buffer": 64 * 1024 * 1024,
        "log_level": "warning",
    })
    srv.start()
    work = Path(tempfile.mkdtemp(prefix="staywire-autobahn-"))
    spec = {
        "outdir": "./reports/servers",
        "servers": [{"agent": "staywire", "url": f"ws://127.0.0.1:{srv.port}/echo"}],
        "cases": args.cases.split(","),
        "exclude-cases": ["12.*", "13.*"],  # permessage-deflate: not offered
        "exclude-agent-cases": {},
    }
    (work / "spec.json").write_text(json.dumps(spec))
    started = time.monotonic()
    try:
        subprocess.run([args.wstest, "-m", "fuzzingclient", "-s", "spec.json"], cwd=work,
                       check=True, stdout=subprocess.DEVNULL, timeout=900)
    finally:
        srv.close()
    elapsed = time.monotonic() - started
    index = json.loads((work / "reports" / "servers" / "index.json").read_text())
    failed = summarise(index["staywire"], args.cases, elapsed, Path(args.out),
                       title="Protocol conformance of the server: Autobahn|Testsuite",
                       intro=["`make conformance` runs the Autobahn|Testsuite fuzzing client "
                              "(wstest 25.10.1, in a",
                              "Python 2.7 virtualenv) against the server's raw echo endpoint "
                              "(`--echo-path`), which",
                              "runs the same framing code as every Staywire connection."])
    return 1 if failed else 0


def summarise(results: dict, cases: str, elapsed: float, out: Path, *, title: str,
              intro: list[str], notes: list[str] | None = None) -> list[str]:
    """Write the markdown summary of one wstest report; the FAILED case ids."""
    by_behavior = collections.Counter(r["behavior"] for r in results.values())
    by_close = collections.Counter(r["behaviorClose"] for r in results.values())
    failed = sorted((c for c, r in results.items() if r["behavior"] == "FAILED"),
                    key=lambda c: [int(x) for x in c.split(".")])
    lines = [
        f"# {title}",
        "",
        *intro,
        "",
        f"Cases: `{cases}` ({len(results)} cases; 12 and 13, permessage-deflate, are",
        f"excluded: Staywire does not offer compression). Run time: {elapsed:.0f} s.",
        "",
        "| behaviour | cases |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(by_behavior.items())],
        "",
        "| close behaviour | cases |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(by_close.items())],
        "",
        f"FAILED: {len(failed)}" + (f" ({', '.join(failed)})" if failed else ""),
        "",
        *(notes or []),
    ]
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return failed


if __name__ == "__main__":
    sys.exit(main())
