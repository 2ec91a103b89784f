"""``staywire bench``: Staywire against other WebSocket servers, one load generator for all.

* ``harness``: rounds, processes (every one stopped by PID), medians;
* ``loadgen``: the load generator process (picows clients on uvloop);
* ``protocols``: what each server speaks, seen from the generator;
* ``servers``: how each server is started (peers live in ``bench/peers/``);
* ``report``: JSON, markdown and the PNG chart.

Optional dependencies: the ``bench`` extra (rich, matplotlib, python-socketio,
aiohttp), Node and npm for the Node peers, redis-server for the Redis broker.
"""
