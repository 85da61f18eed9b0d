"""The announcer: ``agent.announce`` on start and after every reconnect.

It starts after the inbox and the capability responder and flushes before it
announces, so the server has their subscriptions by the time anyone hears the
announcement (one round trip per agent start). After a reconnect, nats-py has
replayed the subscriptions (and flushed) before it reports the reconnect. A
directory that (re)joins calls the roll (``agent.rollcall``); the node's roll-call
child hears it and announces for each of its agents (:func:`announce`, through
``Agent.announce_again``): no task per agent waits for it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from volta.bus import ConnectionEventKind
from volta.protocol import AGENT_ANNOUNCE, STATUS_CODEC

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from volta.bus import Bus, ConnectionEvent
    from volta.protocol import AgentStatus, Presence

log = logging.getLogger("volta.actors.announcer")


async def announce(bus: Bus, status: AgentStatus, *, quietly: bool = False) -> None:
    """Publish an agent's announce.

    Args:
        quietly: log it at debug level (a roll call makes every agent announce: one
            line each would flood the log).

    Raises:
        BusError: it could not be sent.
    """
    await bus.publish(AGENT_ANNOUNCE, STATUS_CODEC.encode(status))
    log.log(logging.DEBUG if quietly else logging.INFO, "agent %s announced", status.id)


class Announcer:
    """One agent's announcer child."""

    def __init__(
        self,
        status: Callable[[Presence | None], AgentStatus],
        announced: trio.Event,
        bus: Bus,
    ) -> None:
        """Args:
        status: the agent's status as of now.
        announced: set after the first announce (the inbox and the responder read it:
            a start after it is a restart).
        bus: the connection.
        """
        self._status = status
        self._announced = announced
        self._bus = bus

    async def _announce(self) -> None:
        await announce(self._bus, self._status(None))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Announce now and after every reconnect, until cancelled. (A roll call is
        answered by the node's roll-call child for all its agents: :func:`announce`.)"""
        async with self._bus.watch_events() as events:
            await self._bus.flush()
            await self._announce()
            self._announced.set()
            task_status.started()
            await self._on_reconnect(events)

    async def _on_reconnect(self, events: AsyncIterator[ConnectionEvent]) -> None:
        async for event in events:
            if event.kind is ConnectionEventKind.RECONNECTED:
                await self._announce()
