"""The announcer: ``agent.announce`` on start, after every reconnect, and when asked.

It starts after the inbox and the capability responder and flushes before it
announces, so the server has their subscriptions by the time anyone hears the
announcement (one round trip per agent start). After a reconnect, nats-py has
replayed the subscriptions (and flushed) before it reports the reconnect. A
directory that (re)joins calls the roll (``agent.rollcall``); the node hears it
and asks each of its agents to announce again (:class:`AnnounceRequests`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from volta.bus import ConnectionEventKind
from volta.core import open_nursery
from volta.protocol import AGENT_ANNOUNCE, STATUS_CODEC

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from volta.bus import Bus, ConnectionEvent
    from volta.protocol import AgentStatus, Presence

log = logging.getLogger("volta.actors.announcer")


class AnnounceRequests:
    """Requests that an agent announce again, coalesced: however many come in before
    the announcer wakes, it announces once (after the last of them)."""

    def __init__(self) -> None:
        self._requested = trio.Event()

    def request(self) -> None:
        """Ask for one more announce (never blocks)."""
        self._requested.set()

    async def wait(self) -> None:
        """Wait for a request, and take it (and every other one made so far)."""
        await self._requested.wait()
        self._requested = trio.Event()


class Announcer:
    """One agent's announcer child."""

    def __init__(
        self,
        status: Callable[[Presence | None], AgentStatus],
        announced: trio.Event,
        bus: Bus,
        requests: AnnounceRequests | None = None,
    ) -> None:
        """Args:
        status: the agent's status as of now.
        announced: set after the first announce (the inbox and the responder read it:
            a start after it is a restart).
        bus: the connection.
        requests: where asks to announce again (roll calls) arrive.
        """
        self._status = status
        self._announced = announced
        self._bus = bus
        self._requests = requests or AnnounceRequests()

    async def _announce(self, *, quietly: bool = False) -> None:
        status = self._status(None)
        await self._bus.publish(AGENT_ANNOUNCE, STATUS_CODEC.encode(status))
        # A roll call makes every agent announce: one line each would flood the log.
        log.log(logging.DEBUG if quietly else logging.INFO, "agent %s announced", status.id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Announce now, after every reconnect and on request, until cancelled."""
        async with self._bus.watch_events() as events:
            await self._bus.flush()
            await self._announce()
            self._announced.set()
            task_status.started()
            async with open_nursery() as nursery:
                nursery.start_soon(self._on_request)
                await self._on_reconnect(events)

    async def _on_reconnect(self, events: AsyncIterator[ConnectionEvent]) -> None:
        async for event in events:
            if event.kind is ConnectionEventKind.RECONNECTED:
                await self._announce()

    async def _on_request(self) -> None:
        while True:
            await self._requests.wait()
            await self._announce(quietly=True)
