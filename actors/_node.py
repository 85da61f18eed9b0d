"""A node: one process's supervision tree (one per container).

The root supervisor's children, in start order: the directory service, the
capability router, the NATS service API responder (ADR-32: agents show up in
``nats micro ls``), then one child per agent. Agents share the node's NATS
connection (how thousands fit in one process) or each open their own (how each
gets its own credentials). Everything that happens (supervisor events, bus
connection events, agents coming and going) is emitted on one stream,
``node.events``, that logs, metrics and the dashboard all read.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import TypeAlias

import attrs
import trio

from volta._fanout import Fanout
from volta._nursery import open_nursery
from volta.bus import Bus, BusOptions, ConnectionEvent, open_bus
from volta.supervisor import (
    ChildSpec,
    Intensity,
    Supervisor,
    SupervisorEvent,
    SupervisorSpec,
)

from ._agent import Agent, AgentSpec
from ._directory import Directory, DirectoryService, PresenceChange
from ._router import CapabilityRouter
from ._service import ServiceResponder

log = logging.getLogger("volta.actors.node")

NodeEvent: TypeAlias = SupervisorEvent | ConnectionEvent | PresenceChange
"""Everything a node reports."""


def _specs(value: Iterable[AgentSpec]) -> tuple[AgentSpec, ...]:
    return tuple(value)


def _unique_ids(_instance: object, _attribute: object, agents: tuple[AgentSpec, ...]) -> None:
    counts = collections.Counter(agent.id for agent in agents)
    duplicates = sorted(agent_id for agent_id, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"agent ids used more than once: {duplicates}")


@attrs.frozen
class NodeSpec:
    """What one node runs."""

    agents: tuple[AgentSpec, ...] = attrs.field(converter=_specs, validator=_unique_ids)
    """The agents, in start order."""
    bus_options: BusOptions = BusOptions()
    """How the node (and agents with their own connection) reach NATS."""
    shared_connection: bool = True
    """All agents on the node's connection (True) or each on its own (False)."""
    heartbeat_interval: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    """The directory's default for agents that do not state their interval."""
    offline_after_missed: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    """Missed heartbeats after which an agent counts as offline."""
    request_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Default timeout of routed capability requests."""
    intensity: Intensity = Intensity(max_restarts=10, period=60.0)
    """Agent (and service) restarts the node allows before it gives up."""
    name: str = "node"
    """Name of the root supervisor."""


class Node:
    """Runs a :class:`NodeSpec`; ``await node.run(task_status=...)``."""

    def __init__(self, spec: NodeSpec, *, bus: Bus | None = None) -> None:
        """Create the node; nothing runs until :meth:`run`.

        Args:
            spec: what to run.
            bus: an open connection to use instead of opening one from the spec.
        """
        self.spec = spec
        self._bus = bus
        self.events: Fanout[NodeEvent] = Fanout()
        self.directory = Directory(spec.heartbeat_interval, spec.offline_after_missed)
        self.agents: dict[str, Agent] = {}
        self.supervisor: Supervisor | None = None

    def _emit(self, event: NodeEvent) -> None:
        self.events.emit(event)

    def _children(self, bus: Bus) -> list[ChildSpec]:
        spec = self.spec
        directory = DirectoryService(self.directory, bus, on_change=self._emit)
        router = CapabilityRouter(self.directory, bus, default_timeout=spec.request_timeout)
        service = ServiceResponder(self.agents.values, bus)
        children = [
            ChildSpec(name="directory", start=directory.run),
            ChildSpec(name="router", start=router.run),
            ChildSpec(name="service", start=service.run),
        ]
        for agent_spec in spec.agents:
            if spec.shared_connection:
                agent = Agent(agent_spec, bus=bus, on_event=self._emit)
            else:
                options = attrs.evolve(spec.bus_options, name=f"volta-{agent_spec.id}")
                agent = Agent(agent_spec, bus_options=options, on_event=self._emit)
            self.agents[agent_spec.id] = agent
            children.append(ChildSpec(name=f"agent-{agent_spec.id}", start=agent.run))
        return children

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled (stopping in reverse order) or until the root escalates.

        Raises:
            SupervisorEscalation: agents failed more often than the node's intensity allows.
            ConnectFailed: the node's connection could not be opened.
        """
        async with AsyncExitStack() as stack:
            bus = self._bus
            if bus is None:
                bus = await stack.enter_async_context(open_bus(self.spec.bus_options))
            self.supervisor = Supervisor(
                SupervisorSpec(
                    name=self.spec.name,
                    children=self._children(bus),
                    intensity=self.spec.intensity,
                ),
                on_event=self._emit,
            )
            async with open_nursery() as nursery:
                await nursery.start(self._forward_connection_events, bus)
                await self.supervisor.run(task_status=task_status)
                nursery.cancel_scope.cancel()

    async def _forward_connection_events(
        self, bus: Bus, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with bus.watch_events() as events:
            task_status.started()
            async for event in events:
                self._emit(event)
