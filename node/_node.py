"""A node: one process's supervision tree (one per container).

Before anything else, the node claims the ids of its agents (``_identity``):
an agent whose id another node holds, or an agent outside Volta uses, is not
started (logged, and reported as an :class:`IdentityClash` event); if that
leaves none, :meth:`Node.run` raises :class:`IdentityConflict`. The node keeps
answering other nodes' claims for as long as it runs.

The root supervisor's children, in start order: the directory service, the
capability router, the NATS service API responder (ADR-32: agents show up in
``nats micro ls``), the ``task.cancel`` listener, the roll-call responder
(directories that (re)join hear every agent again), then one child per agent.
Agents share the node's NATS connection (how thousands fit in one process) or
each open their own (how each gets its own credentials). Everything that
happens (supervisor events, bus connection events, agents coming and going) is
emitted on one stream, ``node.events``, that logs, metrics and the dashboard
all read.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any, TypeAlias

import attrs
import trio

from volta.actors import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_REQUEST_TIMEOUT,
    Agent,
    AgentSpec,
    DurableInboxes,
    DurableSpec,
    SupervisionPolicy,
    TaskRegistry,
)
from volta.bus import Bus, BusClosed, BusOptions, ConnectionEvent, ConnectionEventKind, open_bus
from volta.core import ConfigError, ConfigProblem, ConfigTypeError, Fanout, open_nursery, validators
from volta.core.validators import describe
from volta.protocol import AgentClaim, Presence
from volta.supervisor import (
    ChildSpec,
    Intensity,
    Supervisor,
    SupervisorEvent,
    SupervisorSpec,
)

from ._canceller import CancelListener
from ._directory import Directory, IdentityClash, PresenceChange
from ._directory_service import DirectoryService, DirectorySpec
from ._identity import Identity, IdentityConflict
from ._roll_call import RollCallResponder
from ._router import CapabilityRouter, RouterSpec
from ._service import ServiceResponder

log = logging.getLogger("volta.node")

NodeEvent: TypeAlias = SupervisorEvent | ConnectionEvent | PresenceChange | IdentityClash
"""Everything a node reports."""


class ConnectionMode(enum.Enum):
    """How the agents of one node reach NATS."""

    SHARED = "shared"
    """All agents share the node's connection (how thousands fit in one process)."""
    PER_AGENT = "per_agent"
    """Each agent opens its own (how each gets its own credentials)."""


def _specs(value: Iterable[AgentSpec]) -> tuple[AgentSpec, ...]:
    if isinstance(value, str | bytes):
        raise ConfigTypeError(f"expected a list of agents, got {describe(value)}", key="agents")
    return tuple(value)


def _check_agents(
    _instance: object, attribute: attrs.Attribute[Any], value: tuple[AgentSpec, ...]
) -> None:
    if not value:
        raise ConfigError("expected at least one agent", key=attribute.name)
    problems = []
    first_at: dict[str, int] = {}
    for index, agent in enumerate(value):
        if agent.id in first_at:
            problems.append(
                ConfigProblem(
                    f"{attribute.name}[{index}].id",
                    f"duplicate agent id {agent.id!r} "
                    f"(first at {attribute.name}[{first_at[agent.id]}])",
                )
            )
        else:
            first_at[agent.id] = index
    if problems:
        raise ConfigError.from_problems(problems)


def _node_options() -> BusOptions:
    # A node keeps trying its first connection: a container may start before its server.
    return BusOptions(retry_initial_connect=True)


def _node_name(spec: NodeSpec) -> str:
    return spec.nats.name or "volta"


@attrs.frozen(kw_only=True)
class NodeSpec:
    """What one node runs: a whole YAML file, key for key (``volta run CONFIG``).

    ``heartbeat_interval``, ``request_timeout`` and ``supervision`` here are every
    agent's unless the agent sets its own (:meth:`settled`).
    """

    nats: BusOptions = attrs.field(factory=_node_options)
    """How the node (and agents with their own connection) reach NATS; ``NATS_URL``,
    ``NATS_USER``, ``NATS_PASSWORD``, ``NATS_TOKEN`` and ``NATS_CREDS`` override it."""
    connection: ConnectionMode = attrs.field(
        default=ConnectionMode.SHARED, validator=attrs.validators.instance_of(ConnectionMode)
    )
    """One NATS connection for all agents (``shared``), or one each (``per_agent``)."""
    heartbeat_interval: float = attrs.field(
        default=DEFAULT_HEARTBEAT_INTERVAL, validator=validators.number(gt=0)
    )
    """Seconds between an agent's heartbeats (every agent's unless it says), and the
    directory's default for peers that do not state theirs."""
    offline_after_missed: int = attrs.field(default=3, validator=validators.integer(ge=1))
    """Heartbeats missed before an agent counts as offline."""
    request_timeout: float = attrs.field(
        default=DEFAULT_REQUEST_TIMEOUT, validator=validators.number(gt=0)
    )
    """Default wait of ``ask`` and capability requests, in seconds (every agent's unless
    it says, and the router's)."""
    supervision: SupervisionPolicy = attrs.field(factory=SupervisionPolicy)
    """Restart policy of each agent's own supervisor (unless the agent sets its own)."""
    directory: DirectorySpec = attrs.field(factory=DirectorySpec)
    """Bounds of the node's directory."""
    router: RouterSpec = attrs.field(factory=RouterSpec)
    """Bounds of the node's capability router."""
    intensity: Intensity = attrs.field(factory=lambda: Intensity(max_restarts=10, period=60.0))
    """Agent (and service) restarts the node allows before it gives up."""
    name: str = attrs.field(
        default=attrs.Factory(_node_name, takes_self=True), validator=validators.text
    )
    """Name of the root supervisor, and the start of the node's id (default: the
    connection's ``nats.name``, else ``volta``)."""
    node_id: str | None = attrs.field(default=None, validator=validators.optional(validators.text))
    """How the node names itself in statuses, claims and errors (default
    ``<name>@<host>:<pid>``)."""
    durable: DurableSpec = attrs.field(factory=DurableSpec)
    """Durable inboxes: direct messages through a JetStream stream when the server has
    JetStream (``mode: auto``), its limits and replicas."""
    claim_window: float = attrs.field(default=0.25, validator=validators.number(gt=0))
    """Seconds the node waits for other nodes to object to the ids it claims."""
    agents: tuple[AgentSpec, ...] = attrs.field(converter=_specs, validator=_check_agents)
    """The agents, in start order; at least one, ids unique."""

    def settled(self, agent: AgentSpec) -> AgentSpec:
        """``agent`` as this node runs it: the node's ``heartbeat_interval``,
        ``request_timeout`` and ``supervision`` where it sets none of its own."""
        return agent.settled(
            heartbeat_interval=self.heartbeat_interval,
            request_timeout=self.request_timeout,
            supervision=self.supervision,
        )


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
        self.node_id = spec.node_id or f"{spec.name}@{socket.gethostname()}:{os.getpid()}"
        self.events: Fanout[NodeEvent] = Fanout()
        self.directory = Directory(
            spec.heartbeat_interval,
            spec.offline_after_missed,
            forget_after=spec.directory.forget_after,
            max_agents=spec.directory.max_agents,
            max_bytes=spec.directory.max_bytes,
        )
        self.agents: dict[str, Agent] = {}
        """The agents that run (those whose ids the node could claim)."""
        self.tasks = TaskRegistry()
        """The units of work running on the node's agents (``task.cancel`` reaches them)."""
        self.refused: list[IdentityClash] = []
        """The agents that were not started, and why."""
        self.supervisor: Supervisor | None = None
        self.identity: Identity | None = None
        """The ids it claims and holds (it answers other nodes' claims), once running."""
        self.directory_service: DirectoryService | None = None
        """The directory child (its counters: malformed, clashes, errors), once running."""
        self.durable: DurableInboxes | None = None
        """The inbox stream, once running, when direct messages are durable."""
        self.rebuilds = 0
        """Times its connection closed for good and was built again."""

    def _emit(self, event: NodeEvent) -> None:
        self.events.emit(event)

    def _agent(self, spec: AgentSpec, bus: Bus) -> Agent:
        spec = self.spec.settled(spec)
        shared = self.spec.connection is ConnectionMode.SHARED
        return Agent(
            spec,
            bus=bus if shared else None,
            bus_options=None if shared else attrs.evolve(self.spec.nats, name=f"volta-{spec.id}"),
            on_event=self._emit,
            node=self.node_id,
            tasks=self.tasks,
            durable=self.durable,
        )

    def _children(self, bus: Bus, directory: DirectoryService) -> list[ChildSpec]:
        spec = self.spec
        router = CapabilityRouter(
            self.directory, bus, default_timeout=spec.request_timeout, spec=spec.router
        )
        service = ServiceResponder(self.agents.values, bus)
        canceller = CancelListener(self.tasks, bus)
        # With one shared connection, the node's own directory and its agents reconnect
        # together (and the agents announce then): its own roll calls need no answer.
        own = self.node_id if spec.connection is ConnectionMode.SHARED else None
        roll_call = RollCallResponder(self.agents.values, bus, node=own)
        children = [
            ChildSpec(name="directory", start=directory.run),
            ChildSpec(name="router", start=router.run),
            ChildSpec(name="service", start=service.run),
            ChildSpec(name="canceller", start=canceller.run),
            ChildSpec(name="roll-call", start=roll_call.run),
        ]
        children += [
            ChildSpec(name=f"agent-{agent.id}", start=agent.run) for agent in self.agents.values()
        ]
        return children

    async def _claim(self, identity: Identity, directory: DirectoryService, bus: Bus) -> None:
        """Keep the agents whose ids this node may run; refuse the others."""
        await directory.sync()
        candidates = [self._agent(spec, bus) for spec in self.spec.agents]
        claims, refused = [], []
        for agent in candidates:
            outsider = self._held_outside_volta(agent.spec)
            if outsider is not None:
                refused.append(outsider)
            else:
                claims.append(AgentClaim(agent.id, agent.instance, agent.spec.replicated))
        kept, lost = await identity.claim(claims, self.spec.claim_window)
        kept_ids = {claim.id for claim in kept}
        self.agents = {agent.id: agent for agent in candidates if agent.id in kept_ids}
        for clash in refused + lost:
            log.error(
                "agent %s not started: %s. Give it another id, or set `replicated: true` "
                "on every instance of it.",
                clash.agent,
                clash.reason,
            )
            self.refused.append(clash)
            self._emit(clash)
        if not self.agents:
            raise IdentityConflict(self.refused)

    def _held_outside_volta(self, spec: AgentSpec) -> IdentityClash | None:
        """An agent listed online whose instances name no node: no claim would find it."""
        info = self.directory.get(spec.id)
        if info is None or info.status is Presence.OFFLINE:
            return None
        if info.replicated and spec.replicated:
            return None
        if not any(instance.node is None for instance in info.instances):
            return None
        return IdentityClash(
            spec.id,
            None,
            self.node_id,
            f"agent {spec.id!r} is already online, run by something that is not a Volta node",
            trio.current_time(),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Claim the agents' ids, then run until cancelled (stopping in reverse order)
        or until the root escalates.

        A connection the node opened itself that closes for good under it (nats-py
        gives up after an error it does not retry, such as an authorization failure
        on reconnect) is rebuilt: a new connection (waiting for NATS as at start),
        the ids claimed again, the agents started again (:attr:`rebuilds`). Unless
        ``nats.reconnect.max_attempts`` is set: whoever set it wants the node to end.

        Raises:
            IdentityConflict: every agent's id is taken (nothing was started).
            SupervisorEscalation: agents failed more often than the node's intensity allows.
            ConnectFailed: the node's connection could not be opened.
            BusClosed: the node's connection gave up reconnecting after its
                ``max_attempts``, or a connection given to the node was closed under it.
        """
        status = _StartedOnce(task_status)
        while True:
            try:
                await self._run_once(status)
                return
            except (BusClosed, BaseExceptionGroup) as error:
                if not (_only_bus_closed(error) and self._rebuilds_its_connection()):
                    raise
                self.rebuilds += 1
                log.warning(
                    "node %s: the NATS connection closed for good (%s); building a new one",
                    self.node_id,
                    error,
                )

    def _rebuilds_its_connection(self) -> bool:
        return self._bus is None and self.spec.nats.reconnect.max_attempts < 0

    async def _run_once(self, task_status: _StartedOnce) -> None:
        """One life of the node on one connection."""
        async with AsyncExitStack() as stack:
            bus = self._bus
            if bus is None:
                bus = await stack.enter_async_context(open_bus(self.spec.nats))
            async with open_nursery() as nursery:
                await nursery.start(self._forward_connection_events, bus)
                self.durable = await DurableInboxes.open(bus, self.spec.durable)
                identity = Identity(bus, self.node_id)
                self.identity = identity
                await nursery.start(identity.serve)
                directory = DirectoryService(
                    self.directory,
                    bus,
                    on_change=self._emit,
                    spec=self.spec.directory,
                    node=self.node_id,
                    holders=identity.holders,
                    window=self.spec.claim_window,
                )
                self.directory_service = directory
                await self._claim(identity, directory, bus)
                self.supervisor = Supervisor(
                    SupervisorSpec(
                        name=self.spec.name,
                        children=self._children(bus, directory),
                        intensity=self.spec.intensity,
                    ),
                    on_event=self._emit,
                )
                await self.supervisor.run(task_status=task_status)
                nursery.cancel_scope.cancel()

    async def _forward_connection_events(
        self, bus: Bus, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Emit the bus's events; end the node if the bus closes for good under it.

        A bus that gave up reconnecting cannot come back: restarting the children
        that use it would only spin until every supervisor's intensity ran out.

        Raises:
            BusClosed: the connection was closed while the node ran.
        """
        async with bus.watch_events() as events:
            task_status.started()
            async for event in events:
                self._emit(event)
                if event.kind is ConnectionEventKind.CLOSED:
                    log.error(
                        "node %s: NATS connection closed for good: %s", self.node_id, event.detail
                    )
                    raise BusClosed(f"the connection to NATS is closed: {event.detail}")


class _StartedOnce:
    """A task status that says started once, whichever life of the node gets there."""

    def __init__(self, status: trio.TaskStatus[None]) -> None:
        self._status = status
        self._said = False

    def started(self, value: None = None) -> None:
        if not self._said:
            self._said = True
            self._status.started(value)


def _only_bus_closed(error: BaseException) -> bool:
    """Whether ``error`` is a BusClosed, or a group of nothing else."""
    if isinstance(error, BaseExceptionGroup):
        return all(_only_bus_closed(inner) for inner in error.exceptions)
    return isinstance(error, BusClosed)
