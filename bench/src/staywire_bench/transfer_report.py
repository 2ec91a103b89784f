"""The markdown of the ``transfer`` section (docs/benchmarks.md, and the terminal)."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown_section"]

LABELS = {"staywire": "Staywire (memory)", "staywire-redis": "Staywire (Redis)",
          "staywire-browser": "Staywire (memory), sent from Chromium",
          "picows": "bare picows relay"}
MET = {True: "met", False: "**not met**", None: "n/a"}


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def markdown_section(tr: dict[str, Any]) -> list[str]:
    meta, rows, goals, targets = tr["meta"], tr["summary"], tr["goals"], tr["targets"]
    cfg, mach = meta["config"], meta.get("machine", {})
    lines: list[str] = []
    add = lines.append
    add("## Transfer: a large payload from one Python client to many subscribers (issue 11)")
    add("")
    add(f"One payload of {cfg['mib']:g} MiB of random bytes sent with `Client.send_transfer` "
        f"to {cfg['subscribers']} subscribers through one Staywire node on the memory "
        "broker, one on Redis, the same from the browser client in Chromium, and, in the "
        "same run, a bare picows server relaying the same "
        "bytes in frames of the same 60 KiB (the sender's write buffer held to the same "
        "8-chunk window). Its own command:")
    add("")
    add("```")
    add(meta["command"])
    add("```")
    add("")
    quick = " (**quick mode**: a small payload; not for comparison)" if meta.get("quick") else ""
    add(f"Run {meta['started']}, {meta['duration_s']:.0f} s{quick}. {cfg['rounds']} round(s) "
        "(the order of the servers rotates each round), medians shown. Machine: "
        f"{mach.get('cpu') or 'unknown CPU'}, {mach.get('cores')} cores, "
        f"{mach.get('redis') or 'no redis-server'}; {meta['placement']}. Load average "
        f"(1, 5, 15 min) at the start {meta.get('loadavg_at_start') or 'n/a'}, at the end "
        f"{meta.get('loadavg_at_end') or 'n/a'}.")
    add("")
    add("| server | MiB/s | vs bare picows | RSS growth MiB | bystander ping p99 ms | "
        "seconds | rounds | every copy intact |")
    add("|---|---:|---:|---:|---:|---:|---:|---|")
    for server, row in rows.items():
        ratio = row.get("ratio")
        add(f"| {LABELS.get(server, server)} | {_f(row['mib_s'])} | "
            f"{'1.00x' if server == 'picows' else ('n/a' if ratio is None else f'{ratio:.2f}x')}"
            f" | {_f(row['rss_growth_mib'])} | {_f(row['ping_p99_ms'])} | "
            f"{_f(row['seconds'], 2)} | {row['rounds']} | "
            f"{'yes' if row['intact'] else '**no**'} |")
    add("")
    add(f"Goals (issue 11): throughput at least {targets['ratio']:.0%} of the bare relay's, "
        f"server RSS growth at most {targets['rss_mib']:g} MiB, bystander round-trip p99 at "
        f"most {targets['ping_p99_ms']:g} ms.")
    add("")
    for server, met in goals.items():
        add(f"* {LABELS[server]}: throughput {MET[met['ratio']]}, RSS {MET[met['rss_mib']]}, "
            f"ping p99 {MET[met['ping_p99_ms']]}.")
    add("")
    add("Every round:")
    add("")
    add("| round | server | MiB/s | RSS growth MiB | ping p99 ms (pings) |")
    add("|---:|---|---:|---:|---:|")
    for rec in tr["records"]:
        m = rec["metrics"]
        add(f"| {rec['round'] + 1} | {LABELS.get(rec['server'], rec['server'])} | "
            f"{_f(m['mib_s'])} | {_f(m['rss_growth_mib'])} | {_f(m['ping_p99_ms'])} "
            f"({m['pings']}) |")
    add("")
    add("How it is measured (`staywire_bench.transfer`):")
    add("")
    add("* **Throughput**: the payload's size over the time from the first byte sent until "
        "every subscriber holds all of it. The subscribers are plain picows connections that "
        "hash what they receive (after Staywire's binary frame header), the same work on "
        "every server, and every copy is checked against the payload's SHA-256.")
    add("* **RSS growth**: the server process's peak resident memory during the transfer "
        "over its resident memory before it, read from /proc every 20 ms.")
    add("* **Bystander ping p99**: one more connection, in a process of its own "
        "(`staywire_bench.transfer_bystander`, not the load generator's busy event loop), "
        "sends an application ping (`ping` on Staywire, `echo` on the bare relay) every "
        "20 ms throughout the transfer.")
    add("* **Rate limits raised**: the bench's Staywire servers run with `rate_bytes` and "
        "`rate_bytes_burst` raised (and the other limits, as in every workload here); with "
        "the default `rate_bytes` of 1 MiB/s per connection, the publisher would be held "
        "to about 1 MiB/s and the figure would be the limit's.")
    add("* **The load generator is the ceiling**: the ten subscribers hash every byte "
        "(ten copies: 2.5 GiB for 256 MiB) in one process, on the same two cores as the "
        "server, so every row, the bare relay's too, is bounded by that; read the ratios.")
    add("* **Slow subscribers are closed, not waited for**: the node's fan-out never "
        "waits for a subscriber, and one more than `max_send_buffer` (1 MiB by default) "
        "behind is closed with 4008 (slow consumer), as for any publication. The Python "
        "sender runs in the "
        "subscribers' process, so it slows down with them; Chromium does not, and a "
        "round where it outran a subscriber is a warning below and is left out of the "
        "medians (the row says how many rounds it has).")
    add("* **The bare relay** writes each binary frame it receives, built once, to every "
        "other room member (`bench/peers/picows_server.py`), what Staywire's hub does "
        "without its protocol.")
    add("* **From the browser**: the browser client's `sendTransfer` in Chromium "
        "(Playwright, `/usr/bin/chromium`) on the node's demo page sends a Blob of the same "
        "size (random bytes made in the page, its SHA-256 computed there before the clock "
        "starts) to the same subscribers through a memory node "
        "(`staywire_bench.transfer_browser`); Chromium shares the cores with the rest.")
    add("")
    for w in tr.get("warnings", [])[:20]:
        add(f"* warning: {w}")
    if tr.get("warnings"):
        add("")
    return lines
