"""How the bench measures: the *Method* section of docs/benchmarks.md, a template that
the report fills with the run's parameters."""

METHOD = """## Method

* **One load generator for every server**: picows clients on uvloop in one process
  (`staywire_bench.loadgen`), pinned with `taskset` to the other core than the server.
  It measures its own CPU time over each window (`time.process_time`) and the server's
  (`/proc/PID/stat`), and flags a window where it used over 90% of its core.
* **Same logical work, each server's own protocol**: Staywire gets v1 envelopes
  (`ping`/`pong` for echo, `sub`/`ack`, `pub`/`msg`), the socket.io servers get
  engine.io v4 / socket.io frames over a raw WebSocket (`40` connect, `42["event",...]`,
  acks `43N`, pings `2` answered `3`), the bare servers (picows, websockets, Node ws)
  a minimal JSON protocol with one broadcast room. Bare servers parse every message
  as JSON, as a small application would.
* **Staywire's settings**: `{staywire_cmd}`
  (the Redis run adds `--broker redis://127.0.0.1:PORT/0`, a private redis-server pinned
  to the server's core). The limits are raised so the limiter is not what is measured,
  but every message still goes through the token buckets, JSON decoding and validation,
  and publications get offsets, history (100) and session records as usual. Echo uses
  `ping`/`pong` envelopes. Per-connection open/close logging is off
  (`--log-level warning`).
* **Quiet cores**: the run holds `/dev/cpu_dma_latency` at 0 (as tuned's
  latency-performance profile does) so idle cores poll instead of halting: on a VM a
  halted vCPU takes ~100 µs to wake, which would otherwise dominate single round trips.
  The generator also reads `/proc/stat` over each window: CPU time used on the two cores
  by anything but the server and the generator (other work on a shared machine) is
  reported, and a group where it exceeded {noise_pct:.0f}% of a core is run again (at most
  {retry_noisy} times, within the {budget:.0f} s budget), keeping the least noisy attempt.
* **Echo, 1 connection**: one message in flight, {echo_duration} s measured after
  {warmup} s warm-up: round trips/s and p50/p99 round-trip time.
* **Echo, {echo_conns} connections**: one message in flight per connection; messages/s.
* **Connection rate**: {k} connections opened with {concurrency} handshakes in flight;
  a connection counts when it is usable (Staywire: `welcome`; socket.io: `40`
  connect ack; others: HTTP 101).
* **Idle memory**: the server's VmRSS (`/proc/PID/status`) after the publisher's
  connection and before the {k} connections, then {settle} s after they are all open;
  the difference divided by {k}.
* **Publish, {echo_conns} connections** (Staywire only: the peers have no acked
  publish): each connection publishes to a channel of its own, history kept, one
  acknowledged publication in flight; acked publications/s and the ack latency over
  {echo_duration} s. For the Redis broker, redis-server's CPU per publication (`INFO
  cpu`) here, with no subscriber, and in the fan-out, with {k}: one `PUBLISH` per node
  per channel keeps the two alike.
* **Fan-out**: the {k} connections join one channel (room); a separate publisher
  connection sends {m} publications back to back (each carries `i`, {pad} bytes of
  padding and its send time `t`); deliveries/s = K x M / (last receipt - first send);
  latency = receipt time - `t` for every delivery (one clock: the generator's).
  The full run's default M is 20, not 50: python-socketio delivers ~6,000 messages/s
  here, so 5,000 x 50 deliveries alone took ~40 s per round and the whole run would not
  have stayed well under 10 minutes (`-m 50` runs the larger burst).
* **Reconnect storm**: the {k} subscribed clients stay connected; the harness kills the
  server (SIGKILL) and starts it again on the same port; every client reconnects with
  Staywire's backoff (`staywire.protocol.backoff.Backoff`: base {backoff_base} s, factor 2,
  cap {backoff_cap} s, jitter x(0.5 + random())) and resubscribes (Staywire: `sub`
  with `since`). Reported: time from the kill until all are back and resubscribed, and
  the peak handshake rate over 200 ms windows.
* Every server is a fresh process for each group (echo; connections/fan-out/storm),
  and the order of the servers rotates each round.
* **Profiling**: `staywire bench --servers staywire --workloads fanout -m 200 --rounds 1
  --profile` attaches `py-spy record --nonblocking` to the server for the fan-out only
  and adds a self/total table to this page (raw stacks in `bench/results/`). It runs on
  the generator's core, so a profiled run is not a measurement run.
* `staywire bench --from-json bench/results/latest.json` rewrites this page and the chart
  from a results file without running anything.
"""
