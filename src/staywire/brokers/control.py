"""The control plane: which nodes are alive, and commands that every node runs.

The server API answers some methods for the whole cluster: ``info`` (every node),
``channels`` (subscribers on every node), ``disconnect`` and ``refresh`` (a user's
connections, wherever they are). A ``ControlPlane`` carries such a command to every
node and brings back each node's answer within a bounded time.

The plane moves opaque JSON: a command is a name and its argument bytes, an answer is
the result bytes or an error string. What a command does is the node's business
(``LocalNode.execute``, in ``staywire.server.control``), so a new command (the
server-side ``subscribe``/``unsubscribe``) is a new entry there and nothing here.

``MemoryControl`` is the one node of a memory broker. ``RedisControl``
(``redis_control.py``) reaches every node sharing a Redis.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["ControlPlane", "FanOut", "LocalNode", "MemoryControl", "NodeFailed"]


class NodeFailed(Exception):
    """A command failed on one node; the message says why, for the API's reply."""


class LocalNode(Protocol):
    """This node, as the control plane runs commands on it."""

    @property
    def node_id(self) -> str: ...

    async def execute(self, command: str, args: bytes) -> bytes:
        """Run ``command`` here; the result as JSON. Raises ``NodeFailed``."""
        ...


@dataclass(slots=True)
class FanOut:
    """Every node's answer to one command, by node id."""

    results: dict[str, bytes] = field(default_factory=dict)  # JSON results
    failed: dict[str, str] = field(default_factory=dict)  # node -> why (error or no answer)

    @property
    def missing(self) -> list[str]:
        return sorted(self.failed)


class ControlPlane(abc.ABC):
    """Every method may raise ``BrokerUnavailable``: then no other node was reached."""

    @abc.abstractmethod
    async def start(self, node: LocalNode) -> None:
        """Announce this node and start taking the other nodes' commands."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Withdraw this node (at once, not after a TTL) and stop; idempotent."""

    @abc.abstractmethod
    async def run(self, command: str, args: bytes, timeout: float) -> FanOut:
        """Run the command on every node, this one included, and collect the answers.

        Waits at most ``timeout`` for the other nodes; a node that has not answered by
        then is in ``failed`` (its effect, if any, is unknown)."""


async def run_local(node: LocalNode, command: str, args: bytes, out: FanOut) -> None:
    try:
        out.results[node.node_id] = await node.execute(command, args)
    except NodeFailed as exc:
        out.failed[node.node_id] = str(exc)


class MemoryControl(ControlPlane):
    """One node: the commands run here and nowhere else."""

    def __init__(self) -> None:
        self._node: LocalNode | None = None

    async def start(self, node: LocalNode) -> None:
        self._node = node

    async def close(self) -> None:
        self._node = None

    async def run(self, command: str, args: bytes, timeout: float) -> FanOut:
        if self._node is None:
            raise RuntimeError("expected a started control plane, got a closed one")
        out = FanOut()
        await run_local(self._node, command, args, out)  # local commands never wait on I/O
        return out
