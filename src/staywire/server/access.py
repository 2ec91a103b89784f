"""Access rules: may this identity subscribe or publish to this channel?

The default rule is the identity's channel grants (``auth.can_access``: glob patterns
from the token); an application can pass its own ``authorize(identity, channel,
action)`` to ``Server``, which then decides alone.
"""

from __future__ import annotations

from collections.abc import Callable

from staywire.server.auth import Identity, can_access

__all__ = ["AccessRules", "Authorizer"]

Authorizer = Callable[[Identity, str, str], bool]


class AccessRules:
    __slots__ = ("_authorize",)

    def __init__(self, authorize: Authorizer | None = None) -> None:
        self._authorize = authorize

    def allows(self, identity: Identity, channel: str, action: str) -> bool:
        """``action`` is ``"sub"`` or ``"pub"``."""
        if self._authorize is not None:
            return bool(self._authorize(identity, channel, action))
        return can_access(identity, channel)
