"""The server API's ``subscribe``/``unsubscribe`` on this node's connections of a user.

``NodeControl`` (control.py) finds the user's connections; this joins or leaves each
(``ServerSubs.join_open``/``leave_open``) and saves its session record, which now
names the channel in ``api_subs``: a reconnect that resumes the session, on any node,
is subscribed again before its welcome (docs/api.md, *subscribe*).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from staywire.server.requests import Conn, session_record
from staywire.server.server_subs import ServerSubs
from staywire.server.sessions import Sessions

__all__ = ["UserSubs"]


class UserSubs:
    __slots__ = ("_subs", "_sessions")

    def __init__(self, server_subs: ServerSubs, sessions: Sessions) -> None:
        self._subs = server_subs
        self._sessions = sessions

    async def subscribe(self, conns: Sequence[Conn], channel: str) -> list[str | None]:
        """Each connection's outcome: ``None`` joined, else the ``ErrorCode`` value why not."""
        return list(await asyncio.gather(*(self._join(c, channel) for c in conns)))

    async def _join(self, conn: Conn, channel: str) -> str | None:
        refused = await self._subs.join_open(conn, channel)
        if refused is not None:
            return refused[0].value
        await self._save(conn)
        return None

    async def unsubscribe(self, conns: Sequence[Conn], channel: str) -> int:
        """How many of the connections had the channel (and left it)."""
        left = [c for c in conns if self._subs.leave_open(c, channel)]
        await asyncio.gather(*(self._save(c) for c in conns))
        return len(left)

    async def _save(self, conn: Conn) -> None:
        if conn.session:
            await self._sessions.save(conn.session, session_record(conn))
