"""An agent: a supervisor whose children are the inbox, the capability
responder, the heartbeat and the announcer (started in that order, stopped in
reverse, so an agent is reachable before it says it exists and says goodbye
before it stops listening).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import attrs
import trio

from volta.bus import Bus, BusOptions, SubscriptionStatistics, open_bus
from volta.protocol import (
    AgentStatus,
    Presence,
    ProgressKind,
    validate_capability,
    validate_own_agent_id,
)
from volta.supervisor import (
    Backoff,
    ChildSpec,
    EventSink,
    Intensity,
    Strategy,
    Supervisor,
    SupervisorSpec,
)

from ._announcer import Announcer
from ._calls import PendingAsks
from ._cancel import TaskRegistry
from ._capabilities import CapabilityResponder, EndpointCounters, Endpoints
from ._context import AgentContext
from ._handler import Handler
from ._heartbeat import Heartbeat
from ._inbox import Inbox, InboxRecord
from ._unit import TaskScope, UnitLimits, Units, UnitStatistics, WorkKind

log = logging.getLogger("volta.actors")


def _check_id(_instance: object, _attribute: object, value: str) -> None:
    validate_own_agent_id(value)


def _check_capabilities(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
    for name in value:
        validate_capability(name)
    if len(set(value)) != len(value):
        raise ValueError(f"capabilities listed twice in {list(value)}")


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class SupervisionPolicy:
    """How an agent's supervisor treats its children."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    """Which children restart together."""
    intensity: Intensity = Intensity(max_restarts=5, period=10.0)
    """Restarts allowed within a period before the agent gives up (escalates)."""
    backoff: Backoff | None = None
    """Delay before restarts (None: at once)."""
    shutdown_timeout: float = 5.0
    """Seconds each child gets for its cleanup when stopped."""


@attrs.frozen
class AgentSpec:
    """Everything that defines one agent."""

    id: str = attrs.field(validator=_check_id)
    """Unique id; one subject token."""
    handler: Handler
    """What the agent does with messages and capability calls."""
    name: str = attrs.field(default=attrs.Factory(lambda self: self.id, takes_self=True))
    """Human-readable name (defaults to the id)."""
    capabilities: tuple[str, ...] = attrs.field(
        default=(), converter=_names, validator=_check_capabilities
    )
    """Capabilities it serves to others."""
    max_concurrency: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    """Messages (and, separately, capability calls) handled at once."""
    heartbeat_interval: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    """Seconds between heartbeats."""
    capability_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    """Seconds a capability call may take before it fails with ``timeout``."""
    request_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Default timeout of ``ask``, ``list_agents`` and ``request_capability``."""
    inbox_buffer: int = attrs.field(default=1024, validator=attrs.validators.ge(1))
    """Messages held for a busy inbox (per subscription) before the newest are dropped."""
    inbox_max_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=attrs.validators.ge(1))
    """Bytes held for a busy inbox (per subscription) before the newest are dropped."""
    replicated: bool = False
    """Whether several instances (on several nodes) may run this id, sharing its work."""
    task_timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    """Deadline, in seconds, of a task this agent starts (work that came without one)."""
    task_budget: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    """Tokens one task may spend on this agent, delegates included (None: no limit)."""
    trace: bool = False
    """Publish the progress of tasks it starts itself (tasks that come with a context
    are always traced)."""
    supervision: SupervisionPolicy = SupervisionPolicy()
    """Restart policy of its children."""


def new_instance_id() -> str:
    """A fresh instance id: 16 hex digits."""
    return uuid.uuid4().hex[:16]


@attrs.frozen
class AgentStatistics:
    """Counters of one agent."""

    id: str
    """The agent id."""
    in_flight: int
    """Messages and capability calls being handled now."""
    handled: int
    """Messages handled successfully."""
    handler_errors: int
    """Messages and capability calls whose handler failed (each answered with an error)."""
    capability_calls: int
    """Capability calls that reached a unit of work (well-formed requests)."""
    restarts: int
    """Restarts of its children."""
    malformed: int
    """Payloads on its inbox that were not valid messages, capability requests that did
    not decode, and work whose task context was malformed."""
    dropped: int
    """Messages its inboxes dropped because they were full."""
    instance: str
    """Its instance id."""
    refused: int = 0
    """Messages and capability calls whose task it refused (a loop, too deep, past its
    deadline)."""
    messages: UnitStatistics | None = None
    """How its messages went, unit by unit."""
    calls: UnitStatistics | None = None
    """How its capability calls went, unit by unit."""


class Agent:
    """Runs one agent; ``await agent.run(task_status=...)`` is a supervisor child."""

    def __init__(
        self,
        spec: AgentSpec,
        *,
        bus: Bus | None = None,
        bus_options: BusOptions | None = None,
        on_event: EventSink | None = None,
        node: str | None = None,
        tasks: TaskRegistry | None = None,
    ) -> None:
        """Create the agent; nothing runs until :meth:`run`.

        Args:
            spec: what the agent is.
            bus: a connection shared with other agents; or None to open one of
                its own from ``bus_options`` on every run.
            bus_options: options of its own connection (when ``bus`` is None).
            on_event: receives the events of the agent's supervisor.
            node: the name of the node running it (in its statuses).
            tasks: the node's running units, for ``task.cancel`` (None: not cancellable).

        Raises:
            ValueError: neither ``bus`` nor ``bus_options`` is given.
        """
        if bus is None and bus_options is None:
            raise ValueError("an agent needs a shared bus or options for its own")
        self.spec = spec
        self._bus = bus
        self._bus_options = bus_options
        self._on_event = on_event
        self._node = node
        self._instance = new_instance_id()
        # What the children share, each handed only what it needs:
        self._asks = PendingAsks()
        self._announced = trio.Event()
        self._inbox = InboxRecord()
        self._endpoints = Endpoints()
        self._context: AgentContext | None = None
        self._units = Units(
            spec.id,
            UnitLimits(spec.task_timeout, spec.task_budget, spec.trace),
            self._progress,
            tasks,
            report_interval=(
                bus.options if bus is not None else bus_options or BusOptions()
            ).report_interval,
        )
        self._supervisor: Supervisor | None = None
        self._started_at = 0.0
        self.started_wall = datetime.now(UTC)
        """When it last started (wall clock)."""

    @property
    def instance(self) -> str:
        """This instance's id (fixed for the life of the object, across restarts)."""
        return self._instance

    @property
    def id(self) -> str:
        """The agent id."""
        return self.spec.id

    @property
    def supervisor(self) -> Supervisor | None:
        """Its supervisor, once it runs."""
        return self._supervisor

    @property
    def announced(self) -> bool:
        """Whether it has announced itself (it is reachable)."""
        return self._announced.is_set()

    @property
    def restarts(self) -> int:
        """Restarts of its children so far."""
        return self._supervisor.statistics().restarts if self._supervisor else 0

    def inbox_statistics(self) -> tuple[SubscriptionStatistics, ...]:
        """The counters of its running inbox's subscriptions (direct, broadcast)."""
        return self._inbox.statistics()

    def endpoint(self, capability: str) -> EndpointCounters:
        """The counters of one of its capability endpoints (for the service API)."""
        return self._endpoints.of(capability)

    def statistics(self) -> AgentStatistics:
        """The counters as they are now."""
        messages = self._units.statistics(WorkKind.MESSAGE)
        calls = self._units.statistics(WorkKind.CAPABILITY)
        return AgentStatistics(
            id=self.spec.id,
            in_flight=messages.in_flight + calls.in_flight,
            handled=messages.answered,
            handler_errors=messages.handler_errors + calls.handler_errors,
            capability_calls=calls.received,
            restarts=self.restarts,
            malformed=self._inbox.malformed
            + self._endpoints.malformed
            + messages.malformed
            + calls.malformed,
            dropped=self._inbox.dropped,
            instance=self._instance,
            refused=messages.refused + calls.refused,
            messages=messages,
            calls=calls,
        )

    def status(self, presence: Presence | None = None) -> AgentStatus:
        """The announce/heartbeat payload as of now (``presence``: as it is, else as said:
        online, or busy when every inbox worker or every capability slot is taken)."""
        spec = self.spec
        messages = self._units.in_flight(WorkKind.MESSAGE)
        calls = self._units.in_flight(WorkKind.CAPABILITY)
        if presence is None:
            busy = max(messages, calls) >= spec.max_concurrency
            presence = Presence.BUSY if busy else Presence.ONLINE
        usage = getattr(spec.handler, "usage", None)
        return AgentStatus(
            id=spec.id,
            name=spec.name,
            capabilities=spec.capabilities,
            status=presence,
            uptime=max(0.0, trio.current_time() - self._started_at),
            in_flight=messages + calls,
            restarts=self.restarts,
            heartbeat_interval=spec.heartbeat_interval,
            instance=self._instance,
            node=self._node,
            replicated=spec.replicated,
            dropped=self._inbox.dropped,
            usage=usage() if callable(usage) else None,
        )

    async def _progress(self, kind: ProgressKind, detail: str, scope: TaskScope) -> None:
        if self._context is not None:
            await self._context.progress(kind, detail, scope=scope)

    def _children(self, bus: Bus) -> tuple[ChildSpec, ...]:
        spec = self.spec
        context = AgentContext(
            spec.id, spec.name, spec.capabilities, bus, self._asks, spec.request_timeout
        )
        self._context = context
        inbox = Inbox(
            spec,
            bus,
            context,
            self._units,
            asks=self._asks,
            record=self._inbox,
            announced=self._announced,
        )
        starts: list[tuple[str, Callable[..., Awaitable[None]]]] = [("inbox", inbox.run)]
        if spec.capabilities:
            responder = CapabilityResponder(
                spec,
                bus,
                context,
                self._units,
                endpoints=self._endpoints,
                announced=self._announced,
            )
            starts.append(("capabilities", responder.run))
        heartbeat = Heartbeat(spec.id, spec.heartbeat_interval, self.status, bus)
        starts.append(("heartbeat", heartbeat.run))
        starts.append(("announcer", Announcer(self.status, self._announced, bus).run))
        timeout = spec.supervision.shutdown_timeout
        return tuple(
            ChildSpec(name=name, start=start, shutdown_timeout=timeout) for name, start in starts
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the agent until cancelled (or until its supervisor escalates).

        Raises:
            SupervisorEscalation: its children failed more often than the intensity allows.
            ConnectFailed: its own connection could not be opened.
        """
        async with AsyncExitStack() as stack:
            bus = self._bus
            if bus is None:
                assert self._bus_options is not None
                bus = await stack.enter_async_context(open_bus(self._bus_options))
            policy = self.spec.supervision
            supervisor = Supervisor(
                SupervisorSpec(
                    name=self.spec.id,
                    children=self._children(bus),
                    strategy=policy.strategy,
                    intensity=policy.intensity,
                    backoff=policy.backoff,
                ),
                on_event=self._on_event,
            )
            self._supervisor = supervisor
            self._started_at = trio.current_time()
            self.started_wall = datetime.now(UTC)
            try:
                await supervisor.run(task_status=task_status)
            finally:
                await self._close_handler()

    async def _close_handler(self) -> None:
        """Let a handler that holds connections (a brain) release them, bounded."""
        close = getattr(self.spec.handler, "aclose", None)
        if close is None:
            return
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(self.spec.supervision.shutdown_timeout),
        ):
            try:
                await close()
            except Exception as error:  # a handler's cleanup must not hide why the agent stopped
                log.warning("agent %s: closing its handler failed: %r", self.spec.id, error)
