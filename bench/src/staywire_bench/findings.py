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
* **Fan-out on Redis** cost about 9x the CPU per delivery of the memory broker:
  pub/sub delivers one publication per loop tick, so every publication meant one write
  per subscriber. A publication that arrives within 1 ms of the previous fan-out flush
  now waits for the next flush (replies never wait); one node on Redis went from 61k to
  69k deliveries/s. What remains is the broker's per-publication read and decode path.
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
