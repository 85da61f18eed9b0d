"""What happens to a connection, as events trio code can watch.

The bus emits one :class:`ConnectionEvent` per change (connected, disconnected,
reconnected, error, slow consumer, malformed, closed) through a
:class:`volta.core.Fanout`, so a stuck watcher can never stall the connection.
"""

from __future__ import annotations

import enum
import logging

import attrs
import trio

log = logging.getLogger("volta.bus")


class ConnectionEventKind(enum.Enum):
    """Kinds of connection events."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    ERROR = "error"
    SLOW_CONSUMER = "slow_consumer"
    MALFORMED = "malformed"
    CLOSED = "closed"


@attrs.frozen
class ConnectionEvent:
    """One change in a connection's life."""

    kind: ConnectionEventKind
    """What happened."""
    server: str | None
    """The server concerned, credentials redacted."""
    detail: str = ""
    """Words about it (an error message, the subject of a slow consumer), redacted."""
    at: float = attrs.field(factory=trio.current_time)
    """trio time of the event."""
