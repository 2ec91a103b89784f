"""The transfer from the browser (issue 11): the same payload sent by the browser client's
``sendTransfer`` in Chromium (Playwright, /usr/bin/chromium) through a Staywire node on
the memory broker, to the same plain subscribers as ``staywire_bench.transfer``.

The page is the node's demo page (``--demo``, its origin allowed): its ``demo.client``
is the browser client. The payload is made in the page (``crypto.getRandomValues``) and
its SHA-256 computed there (``crypto.subtle``) before the clock starts; the time runs from
the call of ``sendTransfer`` until every subscriber holds every byte. Chromium shares the
cores with the node, the subscribers and the bystander, as a browser on the same machine
would.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import uvloop

from staywire_bench.config import BenchError
from staywire_bench.ports import free_port
from staywire_bench.servers import ALL_SERVERS, ProcessRegistry, ServerContext, wait_port
from staywire_bench.transfer import Bystander, Sampler, figures, open_subscribers

__all__ = ["CHROMIUM", "browser_missing", "measure_browser"]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DEADLINE = 600.0

MAKE = """async (size) => {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {  // getRandomValues fills 64 KiB at most
    crypto.getRandomValues(bytes.subarray(at, Math.min(at + 65536, size)));
  }
  window.benchBlob = new Blob([bytes]);
  const d = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');
}"""
SEND = """async () => {
  const r = await demo.client.sendTransfer('bench:files', window.benchBlob);
  return r.sha256;
}"""


def browser_missing() -> str | None:
    """Why the browser figure cannot run here, or None."""
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


def measure_browser(registry: ProcessRegistry, ctx: ServerContext, size: int,
                    subscribers: int) -> dict[str, Any]:
    """One transfer of ``size`` random bytes from Chromium, through a fresh memory node."""
    port = free_port()
    argv, extra_env = ALL_SERVERS["staywire"].build(ctx, port)
    argv += ["--demo", "--allowed-origin", f"http://127.0.0.1:{port}"]
    proc = registry.start("staywire-browser", argv,
                          env=dict(os.environ, PYTHONUNBUFFERED="1", **extra_env))
    try:
        if not wait_port(port, 30.0, proc.alive):
            raise BenchError(f"the node did not start: {proc.log_tail()}")
        return uvloop.run(_browser(port, proc.pid, size, subscribers, registry))
    finally:
        proc.stop()
        registry.forget(proc)
        ctx.api_ports.pop(port, None)


async def _browser(port: int, pid: int, size: int, subscribers: int,
                   registry: ProcessRegistry) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    url = f"ws://127.0.0.1:{port}/ws"
    counters, transports = await open_subscribers(
        url, subscribers, size, b'{"type":"sub","id":1,"channel":"bench:files"}',
        "staywire.v2")
    bystander = Bystander(registry, url, "ping", "staywire.v1")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{port}/")
                await page.wait_for_function(
                    "() => document.getElementById('state').dataset.state === 'OPEN' "
                    "&& window.demo.client.status.binary", timeout=30_000)
                digest = await page.evaluate(MAKE, size)
                await bystander.ready()
                sampler = Sampler(pid)
                started = time.perf_counter()
                sent = await page.evaluate(SEND)
                await asyncio.wait_for(asyncio.gather(*(c.done for c in counters)), DEADLINE)
                elapsed = time.perf_counter() - started
                rss = await sampler.stop()
            finally:
                await browser.close()
    finally:
        await bystander.stop()
        for transport in transports:
            transport.disconnect()
    if sent != digest:
        raise BenchError(f"the page's sendTransfer reported sha256 {sent}, not {digest}")
    return figures(size, digest, elapsed, rss, bystander, counters)
