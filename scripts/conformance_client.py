"""Autobahn's fuzzing server against the Python client's connection layer.

The client's ``Link`` (picows frames through the shared ``MessageAssembler``) echoes
every message of every case back, as the fuzzing server expects; the verdict is read
from reports/clients/index.json. Called by scripts/conformance.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.conformance import summarise  # noqa: E402
from staywire_bench.ports import free_port  # noqa: E402
from staywire.client.link import Link, open_link  # noqa: E402

AGENT = "staywire-client"


async def run_case(base: str, path: str, echo: bool = True) -> list[bytes]:
    received: list[bytes] = []

    def on_text(link: Link, payload: bytes) -> None:
        received.append(payload)
        if echo:
            link.send(payload)

    def on_binary(link: Link, payload: bytes) -> None:
        if echo:
            link.send_binary(payload)

    link = await open_link(f"{base}{path}", on_text=on_text, on_binary=on_binary,
                           on_writable=lambda: None, headers={}, timeout=10,
                           write_buffer_limits=None, max_message_size=17 * 1024 * 1024,
                           subprotocol=None)
    try:
        await asyncio.wait_for(asyncio.shield(link.closed), 60)
    except asyncio.TimeoutError:
        link.abort()
    return received


async def drive(port: int) -> None:
    base = f"ws://127.0.0.1:{port}"
    count = int((await run_case(base, "/getCaseCount", echo=False))[0])
    for case in range(1, count + 1):
        await run_case(base, f"/runCase?case={case}&agent={AGENT}")
    await run_case(base, f"/updateReports?agent={AGENT}", echo=False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wstest", required=True)
    ap.add_argument("--cases", default="1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*")
    ap.add_argument("--out", default=str(ROOT / "docs" / "conformance-client.md"))
    args = ap.parse_args()
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="staywire-autobahn-client-"))
    spec = {"url": f"ws://127.0.0.1:{port}", "outdir": "./reports/clients",
            "cases": args.cases.split(","), "exclude-cases": ["12.*", "13.*"],
            "exclude-agent-cases": {}}
    (work / "spec.json").write_text(json.dumps(spec))
    # -u 0: no web UI. The fuzzing server binds every interface; only 127.0.0.1 is used.
    server = subprocess.Popen([args.wstest, "-m", "fuzzingserver", "-s", "spec.json", "-u", "0"],
                              cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the fuzzing server did not start") from None
                time.sleep(0.1)
        asyncio.run(asyncio.wait_for(drive(port), 900))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    index = json.loads((work / "reports" / "clients" / "index.json").read_text())
    failed = summarise(index[AGENT], args.cases, time.monotonic() - started, Path(args.out),
                       title="Protocol conformance of the Python client: Autobahn|Testsuite",
                       intro=["`make conformance` also runs the Autobahn|Testsuite fuzzing "
                              "server (wstest 25.10.1)",
                              "against the Python client's connection layer (`Link`: picows "
                              "frames through the",
                              "shared `MessageAssembler`), which echoes every message back."],
                       notes=["7.1.2 sends two close frames that the client reads at once. "
                              "picows parses one frame",
                              "ahead of the one it delivers and fails a second close "
                              "(\"Received CLOSE for the second time\",",
                              "1002) before the first is echoed, so the client reads "
                              "through a `CloseFence`",
                              "(staywire/protocol/framing.py) that hands the parser nothing "
                              "after the first close.",
                              ""])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
