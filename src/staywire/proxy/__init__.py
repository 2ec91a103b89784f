"""Proxies: the application's own backend decides connect, refresh, subscribe, publish and rpc.

``client.py`` moves the calls (keep-alive pool, timeout, bounded concurrency,
retries, ``breaker.py``), ``schema.py`` holds the bodies, ``routes.py`` picks the URL,
``backend.py`` is the five events as typed calls, ``metrics.py`` shows their state.
docs/proxy.md is the contract with the backend.
"""
