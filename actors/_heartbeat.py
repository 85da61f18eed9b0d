"""The heartbeat: ``agent.<id>.status`` every ``heartbeat_interval`` seconds.

The first beat goes out at once. Each carries the status (online, or busy when
every worker is taken), uptime, work in flight and restarts. When the agent is
stopped in order, a last beat says ``offline`` so directories need not wait for
missed beats; a crash sends none (the directory's timeout covers it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from volta.bus import BusError
from volta.protocol import STATUS_CODEC, PayloadEncodeError, Presence, agent_status
from volta.supervisor import shutdown_scope

if TYPE_CHECKING:
    from collections.abc import Callable

    from volta.bus import Bus
    from volta.protocol import AgentStatus

log = logging.getLogger("volta.actors.heartbeat")


class Heartbeat:
    """One agent's heartbeat child."""

    def __init__(
        self,
        agent_id: str,
        interval: float,
        status: Callable[[Presence | None], AgentStatus],
        bus: Bus,
    ) -> None:
        """Args:
        agent_id: whose heartbeat (its subject is ``agent.<id>.status``).
        interval: seconds between beats.
        status: the agent's status as of now (``None``: as the agent is; or as said).
        bus: the connection.
        """
        self._agent_id = agent_id
        self._interval = interval
        self._status = status
        self._bus = bus

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Beat until cancelled; say offline when stopped."""
        subject = agent_status(self._agent_id)
        task_status.started()
        try:
            while True:
                await self._bus.publish(subject, STATUS_CODEC.encode(self._status(None)))
                await trio.sleep(self._interval)
        except trio.Cancelled:
            with shutdown_scope():
                try:
                    # No flush: closing the bus flushes what is queued, once for all agents.
                    offline = STATUS_CODEC.encode(self._status(Presence.OFFLINE))
                    await self._bus.publish(subject, offline)
                except (BusError, PayloadEncodeError) as error:
                    log.info("agent %s could not say offline: %s", self._agent_id, error)
            raise
