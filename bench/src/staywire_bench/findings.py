"""What the profiles showed: written down by hand, rendered into docs/benchmarks.md."""

FINDINGS = """## What the profiles showed

Profiles of the server under the bench's loads (py-spy, `--profile`; `perf` is not
available on this VM), what was changed, and what stands in the way.

* **Fan-out** was per-subscriber Python work: `Connection.enqueue` 31% and
  `Connection.deliver` 27% of server time, the `write` system call 17%. The hub now
  appends the one shared frame to each subscriber's pending output inside its own loop
  (no per-delivery calls or state checks; closing connections leave every channel), and
  every connection's output is written once per event-loop tick. Target met (5x Node ws,
  p99 far below); the generator saturates its core before the server does, so the
  figure is a floor.
* **Fan-out on Redis** was 16-27% of the memory broker's deliveries/s (2,000
  subscribers, 50 publications: 85-100k against 370-540k; `staywire bench --quick -k 2000
  -m 50 --servers staywire,staywire-redis --workloads fanout --profile`). The profile
  (py-spy on the node) had 89% of its samples in `Connection.flush`, against 509-611 samples where
  the memory node needed 25-48: each publish was its own `EVALSHA` round trip, so the
  publications came back from pub/sub one round trip apart and each was flushed to
  every subscriber on its own. Of the three suspects, the second was the cause: the
  publishes of one event-loop tick now go to Redis as one pipeline
  (`staywire.brokers.redis_publish`; one batch in flight, so their order holds; each
  keeps its own result or error), and a client's publishes are handed over in the frame
  callback, in order, with no task per publish. After: 39 samples, `Connection.flush`
  64% and `Hub.on_publication` 18%, as in memory; 382k against 394k deliveries/s (0.97),
  p99 259 against 251 ms. The first suspect (pub/sub replies read one per call) was
  refuted: replies already buffered are parsed without yielding to the loop, so a burst
  is delivered in one tick and flushed once.
* **Reconnect storm on Redis** (the third suspect) was 2.3x memory's "all back" time at
  K = 5,000 (3.0-3.4 s against 1.2-1.7 s; the quick run's 200 clients hid it). The
  broker subscribes once per channel per node, so no Redis work grows with the
  subscribers of a channel, but each client's recovery read (`EVALSHA` of the history
  script) and session save (`SET`) was a round trip of its own through redis-py's
  general command path. Both now go through the publish pipeline (a tick's commands in
  one write): 1.9-2.8 s, 0.9-1.9x memory's in the same runs (noisy: memory's own figure
  ranged 1.4-2.4 s). What is left: redis-py's import adds about 0.1 s to the restart,
  and Redis runs on the server's core.
* **Publishing on Redis** from 100 connections was 3.8k acked publishes/s against
  about 20-39k in memory (`staywire bench --quick --servers staywire,staywire-redis
  --workloads publish,fanout,storm`; py-spy attached to the node for 3 s of the publish
  window). After pipelining, the profile showed redis-py's general
  command packer (16%) and its per-reply read (14%: a timer armed and cancelled per
  reply, the pure-Python parser). Each `EVALSHA` is now built from per-channel parts
  made once, a batch's replies are read under one timeout, and redis-py uses hiredis
  (pinned) for its parser: 16-27k acked publishes/s, about half of memory's. What is
  left is Redis itself, on the same core in this bench: 13-18 µs of its CPU per
  publication (the Lua script: `HGET`, `HINCRBY`, `XADD`, two `PEXPIRE`, `PUBLISH`).
* **Redis per publication, against subscribers**: one `PUBLISH` per publication per
  node (`INFO commandstats`: 1.00 at K subscribers); its CPU time per publication was
  16 µs at 20 subscribers and 16-20 µs at 2,000 (200 publications each).
* **Binary fan-out** (`binfanout`: 1 KiB of bytes per publication in binary frames,
  protocol v2; Node `ws` broadcasts the binary frame as it came) against the same burst
  in JSON (`fanout` with `--pad 990`: 1 KiB of JSON data), side by side: `staywire bench
  --workloads fanout,binfanout --servers staywire,staywire-redis,node-ws --pad 990
  --rounds 3` (K = 5,000, M = 20), run twice on a quiet machine (2026-12-04 23:45 UTC,
  load average below 1). Deliveries/s, binary against JSON: memory 450k against 434k
  (1.04) and 460k against 436k (1.05); Redis 602k against 373k (1.61) and 594k against
  384k (1.54); Node `ws` binary 119k and 112k, so Staywire's binary fan-out is
  3.8-4.1x Node `ws`'s on memory and 5.1-5.3x on Redis. The goal (binary >= JSON) is
  met in both runs; the JSON memory figure had the load generator saturated (a floor).
  Binary p99 216-221 ms against JSON 226-228 ms (memory). In-process, the hub's loop
  alone (5,000 subscribers, best of 30): 13.3 M deliveries/s for bytes against 14.2 M
  for JSON, the same frame size; the JSON loop is as fast as before binary data existed.
* **Idle memory**: 10.1 KiB per connection at first. A slotted protocol object without
  a per-connection closure, dropping the upgrade headers picows keeps for a connection's
  life (about 1.5 KiB), and no session record until a session has subscriptions brought
  it to 7.0 KiB, below bare picows (8.0 KiB) whose echo server keeps those headers.
* **Echo over 100 connections** is not met (target 1.3x Node ws). The profile shows
  what stands in the way: 44% of the server's time is the `write` system call and about
  22% the event loop's reads; Staywire's Python (guard, decode, dispatch, encode) is
  under 25%. Bare picows, with no protocol at all, reaches only about 1.2x Node ws here,
  so 1.3x with envelopes, validation and rate limits on would need fewer system calls
  per message than one read and one write, which a request/response echo cannot batch.
  Writing replies at the end of each read instead of once per tick made no measurable
  difference (46-56k messages/s either way, noise larger than any change) and was not
  kept.
* **Two nodes behind nginx** cannot show their scaling on 2 cores: nginx, the generator
  and loopback interrupts take the second core (see the scale-out section).
"""
