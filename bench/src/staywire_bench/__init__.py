"""``staywire bench``: Staywire against other WebSocket servers, one load generator for all.

A distribution of its own (``staywire-bench``, ``bench/pyproject.toml``), so the runtime
package ``staywire`` carries none of it; the ``staywire`` command finds it through the
``staywire.commands`` entry point.

Harness side (the ``staywire bench`` process):

* ``config``: what a run is asked to do; ``catalog``: the names, importable at no cost;
* ``harness``: rounds, noisy reruns, medians (every process stopped by PID);
* ``groups``: one group: a fresh server, a generator, the JSON-lines pipe between them;
* ``servers``: how each server is started (peers live in ``bench/peers/``); ``proxy``:
  nginx in front of Staywire nodes;
* ``scaleout``: the Staywire-only scale-out topologies (1 node, Redis, 2 nodes + nginx);
  ``sizing``: CPU per delivery and per publication with 1 to 3 nodes on one Redis;
* ``machine``, ``ui``: the machine (what it can run) and the progress display;
* ``report`` and ``scaleout_report``: JSON, markdown and the PNG chart;
  ``sizing_report`` and ``sizing_markdown``: the sizing section and its model's inputs.

Load generator side (``python -m staywire_bench.loadgen``, picows clients on uvloop):

* ``loadgen``: entry point and plan; ``generator``: connections and the harness link;
* ``phases``: echo, open, subscribe, fan-out, storm; ``publish_load``: 100 connections
  publishing acked publications; ``scaleload``: the scale-out plans; ``sizingload``:
  the sizing plan, with ``sizing_cpu``: CPU per unit from two snapshots;
* ``protocols``: what each server speaks; ``windows``, ``procfs``, ``redis_cpu``, ``stats``:
  measuring; ``redis_goals``: the Redis broker against the memory broker (report side).

Dependencies: rich, matplotlib, python-socketio, aiohttp (pinned in bench/pyproject.toml);
optional: Node and npm for the Node peers, redis-server for the Redis broker, nginx for
the scale-out.
"""
