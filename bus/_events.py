"""What happens to a connection, as events trio code can watch.

The bus emits one :class:`ConnectionEvent` per change (connected, disconnected,
reconnected, error, slow consumer, closed). Watchers get a bounded channel each;
a watcher that does not keep up loses the newest events and the loss is counted,
so a stuck watcher can never stall the connection.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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


@attrs.define
class EventFanout:
    """Hands each event to every watcher without ever blocking the emitter."""

    _watchers: list[trio.MemorySendChannel[ConnectionEvent]] = attrs.field(factory=list)
    _lost: int = 0

    @property
    def lost(self) -> int:
        """Events not delivered because a watcher's buffer was full."""
        return self._lost

    def emit(self, event: ConnectionEvent) -> None:
        """Give the event to every watcher (sync; safe from asyncio callbacks)."""
        for channel in list(self._watchers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self._lost += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._watchers.remove(channel)

    @asynccontextmanager
    async def watch(
        self, buffer: int = 256
    ) -> AsyncIterator[trio.MemoryReceiveChannel[ConnectionEvent]]:
        """A channel of the events from now until the block ends."""
        send, receive = trio.open_memory_channel[ConnectionEvent](buffer)
        self._watchers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in self._watchers:
                self._watchers.remove(send)
            send.close()

    def close(self) -> None:
        """End every watcher's channel."""
        for channel in self._watchers:
            channel.close()
        self._watchers.clear()
