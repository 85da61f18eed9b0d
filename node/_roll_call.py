"""The node child that answers roll calls: ``agent.rollcall`` makes its agents announce.

A directory that joins the bus, or rejoins it after a reconnect, may have missed
announces (they were published while it was away) and would otherwise wait up to a
heartbeat interval for the rest. So it calls the roll (docs/PROTOCOL.md 5.7) and
every node has each of its agents announce again. One subscription per node, not
one per agent: ten thousand agents cost one.

Answers are spread and coalesced: a round starts after a random delay of up to
``spread`` seconds (so that a hundred nodes do not answer in the same instant),
covers every call heard until it starts, and is followed by at least ``spread``
seconds without another (so a flood of roll calls costs a node at most one round
of announces per ``spread``, never a round per call). A call is never dropped: one
heard during the pause is answered by the next round, within ``2 * spread``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import trio

from volta.bus import Bus, BusError, Delivery, Subscription
from volta.core import open_nursery
from volta.protocol import AGENT_ROLL_CALL, ROLL_CALL_CODEC, ProtocolError, RollCall

if TYPE_CHECKING:
    from volta.actors import Agent

log = logging.getLogger("volta.node.roll_call")

SPREAD = 0.25
"""Default most seconds a node waits before it answers a roll call (and pauses after)."""


class RollCallResponder:
    """The node child that has the node's agents announce again when the roll is called."""

    def __init__(
        self,
        agents: Callable[[], Iterable[Agent]],
        bus: Bus,
        *,
        node: str | None = None,
        spread: float = SPREAD,
    ) -> None:
        """Args:
        agents: the node's agents as of now.
        bus: the node's connection.
        node: the node's name when its agents share its connection: its own
            directory's roll calls then need no answer (they reconnect together,
            and the agents announce after every reconnect anyway).
        spread: most seconds before a round starts, and least seconds between rounds.
        """
        self._agents = agents
        self._node = node
        self._bus = bus
        self._spread = spread
        self._called = trio.Event()
        self.heard = 0
        """Roll calls heard."""
        self.rounds = 0
        """Rounds of announces made (one may answer many calls)."""
        self.malformed = 0
        """Roll calls that did not decode (ignored)."""
        self.failed = 0
        """Announces that could not be sent."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer roll calls until cancelled."""
        async with self._bus.subscribe(AGENT_ROLL_CALL) as calls, open_nursery() as nursery:
            await self._bus.flush()
            nursery.start_soon(self._answer)
            task_status.started()
            await self._hear(calls)

    async def _malformed(self, _delivery: Delivery, _error: ProtocolError) -> None:
        self.malformed += 1

    async def _hear(self, calls: Subscription) -> None:
        async for _delivery, call in calls.decoded(_roll_call, on_malformed=self._malformed):
            self.heard += 1
            if call.node is not None and call.node == self._node:
                continue
            log.debug("roll call from %s", call.node or "an unnamed caller")
            self._called.set()

    async def _answer(self) -> None:
        while True:
            await self._called.wait()
            await trio.sleep(random.uniform(0, self._spread))
            self._called = trio.Event()  # calls heard from here on need another round
            for agent in list(self._agents()):
                try:
                    await agent.announce_again()  # (one not yet announced does at start)
                except BusError as error:  # disconnected: it announces on reconnect
                    self.failed += 1
                    log.debug("agent %s could not answer the roll call: %s", agent.id, error)
            self.rounds += 1
            await trio.sleep(self._spread)


def _roll_call(delivery: Delivery) -> RollCall:
    return ROLL_CALL_CODEC.decode(delivery.data)
