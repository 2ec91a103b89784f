"""The Python client: ``async with Client(url) as client`` (see docs/client-python.md)."""

from staywire.client.auth import AuthMode
from staywire.client.client import Client
from staywire.client.state import CloseInfo, ConnectionState, StateChange
from staywire.client.subscription import (
    Join, Leave, Member, Message, Presence, Recovery, Subscription,
)
from staywire.client.transfers import Transfer, TransferFailed
from staywire.protocol.backoff import Backoff
from staywire.protocol.positions import Position

__all__ = [
    "AuthMode",
    "Backoff",
    "Client",
    "CloseInfo",
    "ConnectionState",
    "Join",
    "Leave",
    "Member",
    "Message",
    "Position",
    "Presence",
    "Recovery",
    "StateChange",
    "Subscription",
    "Transfer",
    "TransferFailed",
]
