"""One stream of events, many watchers, and an emitter that never blocks.

The bus's connection events and a node's runtime events (restarts, presence,
connection changes) both go through a :class:`Fanout`: each watcher gets a
bounded channel; a watcher that falls behind loses the newest events and the
loss is counted, so a stuck watcher (a slow dashboard) can never stall the
code that emits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Fanout(Generic[T]):
    """Hands each event to every watcher without ever blocking the emitter."""

    def __init__(self) -> None:
        self._watchers: list[trio.MemorySendChannel[T]] = []
        self._lost = 0

    @property
    def lost(self) -> int:
        """Events not delivered because a watcher's buffer was full."""
        return self._lost

    @property
    def watchers(self) -> int:
        """How many watchers there are now."""
        return len(self._watchers)

    def emit(self, event: T) -> None:
        """Give the event to every watcher (sync; safe from asyncio callbacks)."""
        for channel in list(self._watchers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self._lost += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._watchers.remove(channel)

    @asynccontextmanager
    async def watch(self, buffer: int = 256) -> AsyncIterator[trio.MemoryReceiveChannel[T]]:
        """A channel of the events emitted from now until the block ends."""
        send, receive = trio.open_memory_channel[T](buffer)
        self._watchers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in self._watchers:
                self._watchers.remove(send)
            send.close()

    def close(self) -> None:
        """End every watcher's channel (their iteration stops)."""
        for channel in self._watchers:
            channel.close()
        self._watchers.clear()
