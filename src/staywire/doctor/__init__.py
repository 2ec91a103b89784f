"""``staywire doctor URL``: check any WebSocket endpoint, and the proxies in front of it,
against the checklist of how WebSocket deployments fail (docs/doctor.md).

The doctor speaks WebSocket through its own small client (``frames.py``, ``probe.py``)
rather than a library, because a library would refuse to send what the doctor must send
(invalid UTF-8, oversized messages) and would hide what it must see (a close frame
without a code, a TCP connection that just dies, a ping it should not answer).

Parts, imports pointing down: ``cli`` -> ``runner``/``compare`` -> ``checks/*`` ->
``context`` -> ``probe`` -> ``frames``; ``presets`` (application heartbeats),
``model`` (verdicts) and ``report`` (table, JSON) stand beside them.
"""
