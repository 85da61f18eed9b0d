"""The announcer: ``agent.announce`` on start and after every reconnect.

It starts after the inbox and the capability responder and flushes before it
announces, so the server has their subscriptions by the time anyone hears the
announcement (one round trip per agent start). After a reconnect, nats-py has
replayed the subscriptions (and flushed) before it reports the reconnect.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from volta.bus import ConnectionEventKind
from volta.protocol import AGENT_ANNOUNCE, STATUS_CODEC

if TYPE_CHECKING:
    from collections.abc import Callable

    from volta.bus import Bus
    from volta.protocol import AgentStatus, Presence

log = logging.getLogger("volta.actors.announcer")


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
        status = self._status(None)
        await self._bus.publish(AGENT_ANNOUNCE, STATUS_CODEC.encode(status))
        log.info("agent %s announced", status.id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Announce now and after every reconnect, until cancelled."""
        async with self._bus.watch_events() as events:
            await self._bus.flush()
            await self._announce()
            self._announced.set()
            task_status.started()
            async for event in events:
                if event.kind is ConnectionEventKind.RECONNECTED:
                    await self._announce()
