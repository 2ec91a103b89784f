"""The load generator: picows clients on uvloop, in a process of its own.

The harness starts it as ``python -m staywire_bench.loadgen SPEC`` (SPEC is JSON),
pinned with ``taskset`` to the core the server does not use. The same generator
drives every server; only the framing of the messages differs
(``staywire_bench.protocols``).

It talks to the harness in JSON lines: events on stdout (``progress``,
``result``, ``request``, ``done``), and one reply line on stdin for each
``request`` (``rss``: the server's VmRSS; ``restart``: kill the server and start
it again on the same port, for the reconnect storm).

This module is the entry point and the plan of a group (which workloads, in
which order, on which connections). The connections and the harness link are in
``staywire_bench.generator``, the workloads in ``staywire_bench.phases``; a spec
with ``"plan": "scaleout"`` runs ``staywire_bench.scaleload`` instead, one with
``"plan": "proxy"`` ``staywire_bench.proxyload``, one with ``"plan": "sizing"``
``staywire_bench.sizingload``.

Every loop here is bounded in count and in time; every connection is closed
before the process exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
from typing import Any

from staywire_bench import phases
from staywire_bench.binfanout import binfanout, supported
from staywire_bench.gcstats import delta
from staywire_bench.generator import Generator
from staywire_bench.windows import CORES

__all__ = ["main", "run_plan"]


async def run_plan(gen: Generator) -> None:
    """The workloads of the spec, group A (echo) then group B (connections, fan-out, storm)."""
    await gen.open_stdin()
    wanted = list(gen.spec["workloads"])
    p = gen.params
    try:
        if "echo1" in wanted:
            gen.emit(event="result", workload="echo1",
                     metrics=await phases.echo(gen, "echo1", 1))
            gen.close_conns()
        if "echo100" in wanted:
            await _profile(gen, "echo100")
            gc0 = await gen.gc_snapshot()
            metrics = await phases.echo(gen, "echo100", int(p["echo_conns"]))
            metrics["gc"] = delta(gc0, await gen.gc_snapshot())
            await _profile(gen, None)
            gen.emit(event="result", workload="echo100", metrics=metrics)
            gen.close_conns()
        if "publish" in wanted and gen.proto.name == "staywire":  # acked publishes: Staywire
            from staywire_bench.publish_load import publish

            await _profile(gen, "publish")
            metrics = await publish(gen, int(p["echo_conns"]))
            await _profile(gen, None)
            gen.emit(event="result", workload="publish", metrics=metrics)
            gen.close_conns()
        group_b = {"connrate", "idle", "fanout", "binfanout", "storm"} & set(wanted)
        if group_b:
            await _group_b(gen, wanted)
    finally:
        gen.close_all()
        await asyncio.sleep(0.05)
    gen.emit(event="done")


async def _group_b(gen: Generator, wanted: list[str]) -> None:
    p = gen.params
    k = int(p["K"])
    m = int(p["M"])
    timeout = float(p.get("connect_timeout", 10.0))
    # The publisher first: it is also the warm-up connection before the RSS baseline.
    publisher = await gen.connect(-1, timeout)
    gc0 = await gen.gc_snapshot()
    subs, connrate, idle = await phases.open_phase(gen, k, "idle" in wanted)
    gc1 = await gen.gc_snapshot()
    connrate["gc"] = delta(gc0, gc1)  # the idle workload's too: the same opening
    if idle is not None:
        idle["gc"] = connrate["gc"]
    if "connrate" in wanted:
        gen.emit(event="result", workload="connrate", metrics=connrate)
    if "idle" in wanted and idle is not None:
        gen.emit(event="result", workload="idle", metrics=idle)
    sub_info: dict[str, Any] = {}
    binary = "binfanout" in wanted and supported(str(gen.spec.get("server")))
    if "fanout" in wanted or "storm" in wanted or binary:
        sub_info = await phases.subscribe(gen, subs)
    gc2 = await gen.gc_snapshot()
    delivered = 0
    if "fanout" in wanted:
        await _profile(gen, "fanout")
        metrics = await phases.fanout(gen, publisher, subs, m)
        metrics["gc"] = delta(gc2, await gen.gc_snapshot())
        metrics["gc_subscribe"] = delta(gc1, gc2)
        metrics["subscribe_s"] = sub_info.get("seconds")
        metrics["sub_errors"] = sub_info.get("sub_errors")
        await _profile(gen, None)
        delivered = m if metrics["complete"] else 0
        gen.emit(event="result", workload="fanout", metrics=metrics)
    if binary:
        metrics = await binfanout(gen, publisher, subs, m)
        # The storm resumes from the offsets delivered: both bursts, when both completed
        # (0, a replay from the ack's position, when either did not).
        whole = metrics["complete"] and (delivered or "fanout" not in wanted)
        delivered = delivered + m if whole else 0
        gen.emit(event="result", workload="binfanout", metrics=metrics)
    if "storm" in wanted:
        publisher.storm = False
        metrics = await phases.storm(gen, subs, delivered)
        # The restarted node's collections since it started: the storm is all it has seen.
        zero = {"collections": [0.0, 0.0, 0.0], "pause_s": [0.0, 0.0, 0.0],
                "max_pause_s": [0.0, 0.0, 0.0]}
        metrics["gc"] = delta(zero, await gen.gc_snapshot())
        gen.emit(event="result", workload="storm", metrics=metrics)


async def _profile(gen: Generator, workload: str | None) -> None:
    """With ``--profile``, the harness attaches py-spy to the server for one workload's
    phase (``workload``) and detaches it after (``None``)."""
    if not gen.params.get("profile"):
        return
    await gen.request("profile-stop" if workload is None else f"profile-start:{workload}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    CORES.update(f"cpu{c}" for c in spec.get("cores", []) if c is not None)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s loadgen %(levelname)s %(name)s %(message)s")
    # Collection pauses would land in the latencies; the generator makes few cycles.
    gc.disable()
    import uvloop

    async def run() -> None:
        gen = Generator(spec)
        try:
            if spec.get("plan") == "scaleout":
                from staywire_bench.scaleload import run_scaleout

                await run_scaleout(gen)
            elif spec.get("plan") == "sizing":
                from staywire_bench.sizingload import run_sizing

                await run_sizing(gen)
            elif spec.get("plan") == "proxy":
                from staywire_bench.proxyload import run_proxy

                await run_proxy(gen)
            else:
                await run_plan(gen)
        except Exception as exc:
            gen.emit(event="error", error=f"{type(exc).__name__}: {exc}"[:500])
            raise

    try:
        uvloop.run(run())
    except Exception:  # noqa: BLE001 - reported as an event already
        logging.getLogger("staywire_bench").exception("load generator failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
