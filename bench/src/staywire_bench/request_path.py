"""Issue 16, the request path against the transport: the two runs and the profiles,
written down by hand, rendered into docs/benchmarks.md after the findings."""

REQUEST_PATH = """## The request path against the transport (issue 16)

Two runs of the same command, side by side in each run: Staywire on the memory broker, bare picows (`bench/peers/picows_server.py`) and Node ws; *before* is the code before the changes below, *after* is this branch. Both runs on the shared 2-core machine with other sessions busy on it (most groups were flagged noisy and rerun): read the ratios within a run.

```
staywire bench --servers staywire,picows,node-ws --workloads echo100,publish,fanout,idle --rounds 3
```

(*before* with the default `--retry-noisy 2`, *after* with `--retry-noisy 1`.) Server CPU is the server process's user + system time over the measured window divided by the messages answered in it (`server_us_per_msg` in the JSON; both runs are in `bench/results/reqpath-before.json` and `reqpath-after.json`).

| goal | before | after | |
|---|---|---|---|
| echo over 100 connections >= 1.3x Node ws | 1.40x | 0.94x | not met |
| echo capacity against Node ws (its server µs per message / Staywire's) | 1.14x | 1.12x | not met |
| publish capacity against Node ws's echo (µs per echo / Staywire's µs per publish) | 0.76x | 0.77x | not met |
| server CPU per echo above bare picows <= 5 µs | +1.0 µs | +0.9 µs | met |
| publishes/s (acked, history kept) >= 1.0x Node ws's echo rate | 1.22x | 0.83x | not met |
| fan-out >= 80% of bare picows | 104% | 75% | not met |
| idle memory <= 8 KiB per connection | 6.85 KiB | 6.85 KiB | met |

Medians of the three rounds:

| run | server | echo-100 msg/s | server µs/msg | echo p99 µs | publishes/s | server µs/publish | publish p99 ms | fan-out deliveries/s | fan-out p99 ms | idle KiB/conn |
|---|---|---|---|---|---|---|---|---|---|---|
| before | Staywire (memory) | 32,547 | 13.4 | 12,188 | 28,451 | 19.9 | 11.3 | 357,086 | 278.7 | 6.85 |
| before | bare picows | 32,382 | 12.4 | 12,569 | n/a | n/a | n/a | 344,696 | 288.7 | 8.01 |
| before | Node ws | 23,258 | 15.2 | 17,552 | n/a | n/a | n/a | 47,755 | 2,087.8 | 8.15 |
| after | Staywire (memory) | 17,569 | 12.1 | 39,004 | 15,574 | 17.6 | 18.9 | 166,531 | 597.4 | 6.85 |
| after | bare picows | 21,502 | 11.2 | 24,566 | n/a | n/a | n/a | 221,023 | 450.9 | 8.01 |
| after | Node ws | 18,683 | 13.6 | 20,154 | n/a | n/a | n/a | 29,665 | 3,263.5 | 8.05 |

The *after* run was about twice as loaded by other sessions as the *before* run: every server's rates fell by a third to a half, bare picows' and Node ws's too, while the server CPU per message did not grow. At 17,569 echoes/s and 12.1 µs each, Staywire's server used about 21% of its core: the rates of that run are the generator's and the machine's, not the server's, and their ratios moved with the noise (the fan-out ratio went from 104% to 75% with a server that did less work per message; the p99s doubled for bare picows too). The CPU per message is the figure a loaded machine does not halve: Staywire's echo costs 0.9-1.0 µs more than bare picows' (goal: at most 5), and 11% less than Node ws's, which is 1.12x Node ws's capacity, not the 1.3x the goal asks; a publish (acked, history kept) costs 17.6 µs, more than Node ws's echo (13.6), so that goal is not met on capacity either. A run on a quiet machine is needed before the rate goals can be called met or not.

p99 against before: echo 39,004 against 12,188 µs, fan-out 597.4 against 278.7 ms.

### The bare picows peer

Issue 16 measures the fan-out against bare picows *writing each frame once per
subscriber*. The peer called `transport.send` for every member, which built and copied the
frame per member and made one `write` per member per publication: in the run at the top of
this page (before this change) it delivered 96,995/s, a quarter of Staywire. It now builds
each `msg` frame once and writes the frames of an event-loop tick with one `write` per
member, the same bytes object for all, as Staywire's hub does without its protocol: about
3.5x faster, and Staywire's fan-out is measured against that.

### Profile of the request path

```
staywire bench --quick --servers staywire,picows --workloads echo100,publish,fanout --profile
```

py-spy (`--nonblocking`, 500 Hz) attached to the server for each workload's window
(`--profile` now covers `echo100` and `publish` as well as `fanout`); *before* on the code
before the changes below, *after* on this branch.

Staywire, echo over 100 connections: self % of the samples, before (370 samples) and after (366 samples):

| before: function | self % | after: function | self % |
|---|---|---|---|
| `Connection.flush (server/connection.py)` | 47.0 | `Connection.flush (server/connection.py)` | 45.4 |
| `Runner.run (asyncio/runners.py)` | 32.7 | `Runner.run (asyncio/runners.py)` | 27.6 |
| `Connection.on_ws_frame (server/connection.py)` | 6.5 | `Connection.on_ws_frame (server/connection.py)` | 6.3 |
| `MessageAssembler.assemble (protocol/framing.py)` | 4.6 | `TokenBucket._refill (protocol/ratelimit.py)` | 5.5 |
| `decode (protocol/envelope.py)` | 1.9 | `_PeerProtocol.connection_made (server/transport.py)` | 2.5 |
| `text_frame (server/transport.py)` | 1.9 | `RequestHandlers.dispatch (server/requests.py)` | 2.2 |
| `RequestHandlers.dispatch (server/requests.py)` | 1.9 | `Connection.enqueue (server/connection.py)` | 1.9 |
| `encode (protocol/envelope.py)` | 1.4 | `TokenBucket.take (protocol/ratelimit.py)` | 1.9 |

Staywire, publish from 100 connections: self % of the samples, before (356 samples) and after (358 samples):

| before: function | self % | after: function | self % |
|---|---|---|---|
| `Runner.run (asyncio/runners.py)` | 30.6 | `Runner.run (asyncio/runners.py)` | 30.4 |
| `Connection.flush (server/connection.py)` | 14.0 | `Connection.flush (server/connection.py)` | 22.1 |
| `can_access.<locals>.<genexpr> (server/auth.py)` | 12.4 | `MemoryBroker._maybe_forget_idle (brokers/memory.py)` | 14.8 |
| `decode (protocol/envelope.py)` | 7.6 | `Connection.on_ws_frame (server/connection.py)` | 7.5 |
| `Connection.on_ws_frame (server/connection.py)` | 6.2 | `Connection.enqueue (server/connection.py)` | 6.7 |
| `Connection.enqueue (server/connection.py)` | 3.7 | `decode (protocol/envelope.py)` | 3.9 |
| `add_extra_headers (picows/common.py)` | 3.1 | `Hub.mark_dirty (server/hub.py)` | 2.2 |
| `Hub.flush (server/hub.py)` | 2.5 | `TokenBucket.take (protocol/ratelimit.py)` | 1.7 |

Bare picows, echo over 100 connections, same run (368 samples): `Peer.on_ws_frame (picows_server.py)` 56.8%, `Runner.run (asyncio/runners.py)` 34.2%, `JSONDecoder.raw_decode (json/decoder.py)` 4.1%, `JSONDecoder.decode (json/decoder.py)` 1.9%.

Read with care: the cores are shared, and py-spy samples wall-clock time, so a server that
another process preempts is sampled where it stopped, as if it were working there. Each of
the single lines that jump out (`can_access`'s generator before, `_maybe_forget_idle` after,
`MessageAssembler.assemble`, `TokenBucket._refill`) is one single stack with 17 to 53
samples, 34 to 106 ms on one line that costs well under a millisecond over the whole window:
most likely the server preempted there, not cost. What
holds in every profile, Staywire's and bare picows': about 45% in `Connection.flush`, which is
the `write` system call (one per connection per tick), and about 30% in the event loop's own
C code (reads, picows' frame parser); bare picows spends the same in `on_ws_frame` (its
`transport.send`, the same `write`) and `Runner.run`. Staywire's own Python (guard, decode,
dispatch, reply) is under 20% of the echo's server time, and the measured difference to bare
picows is about 1 µs of server CPU per message.

The issue's candidates, against the profiles and the code:

* **A task or future per request**: refuted. `ping` and, on the memory broker, `pub` are
  answered in the frame callback (`RequestHandlers.dispatch` → `_pong` / `pub_now`); no
  task or future appears in the profiles. Only auth, sub and rpc go to a worker.
* **Decoding each envelope twice**: refuted. `decode` runs once per message, into the typed
  struct; `salvage_id` decodes again only for a message that is refused.
* **A reply built as a dict, then encoded**: confirmed for `pong`, the only hot reply built
  that way (acks and `msg` were spliced already): now spliced, `t` still encoded by msgspec.
* **Per-message logging or metric label lookups**: refuted: no logging frame in any
  profile; the counters are plain integer attributes.
* **The token bucket doing time calls per message**: refuted: one `time.monotonic()` per
  frame, shared by both buckets and the heartbeat; the buckets take it as `now`.
* **Copying frames on write**: refuted: a connection's frames of a tick are joined and
  written once. `writelines` (uvloop's vectored write, no join) was slower: 12.4-12.9 µs
  against 10.8-11.4 µs of CPU per connection-write of 20 frames, 300 loopback connections.
* Also changed, each measured with `timeit`: `can_access` (every publish and subscribe) as
  a plain loop with the `*` grant short-cut, 81 ns instead of 657 ns; an ASCII text
  message is not decoded to check its UTF-8 (33 instead of 58 ns for a ping).

The fan-out windows were too short to profile (5-16 samples). What is left between
Staywire's echo and the transport is about 1 µs of Python per message; the system calls
(one read and one write per request) are shared with bare picows and Node ws, so the 1.3x
of Node ws that the echo goal asks cannot come from the Python path alone.
"""
