"""An agent: a supervisor whose children are the inbox, the capability
responder, the heartbeat and the announcer (started in that order, stopped in
reverse, so an agent is reachable before it says it exists and says goodbye
before it stops listening).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import attrs
import trio

from volta.bus import Bus, BusOptions, Subscription, open_bus
from volta.protocol import AgentStatus, Presence, validate_capability, validate_own_agent_id
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
from ._capabilities import CapabilityResponder
from ._context import AgentContext
from ._handler import Handler
from ._heartbeat import Heartbeat
from ._inbox import Inbox

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


@attrs.define
class EndpointCounters:
    """Counters of one capability endpoint (reported by the service API)."""

    requests: int = 0
    errors: int = 0
    processing_ns: int = 0
    last_error: str = ""

    def record(self, elapsed_ns: int, error: str | None) -> None:
        """Count one answered call."""
        self.requests += 1
        self.processing_ns += elapsed_ns
        if error is not None:
            self.errors += 1
            self.last_error = error


def new_instance_id() -> str:
    """A fresh instance id: 16 hex digits."""
    return uuid.uuid4().hex[:16]


@attrs.define
class AgentState:
    """The runtime state an agent's children share (read by the heartbeat)."""

    spec: AgentSpec
    instance: str = attrs.Factory(new_instance_id)
    node: str | None = None
    tasks: TaskRegistry | None = None
    started_at: float = 0.0
    messages_in_flight: int = 0
    calls_in_flight: int = 0
    handled: int = 0
    handler_errors: int = 0
    capability_calls: int = 0
    malformed: int = 0
    refused: int = 0
    announced: bool = False
    inbox_subscriptions: tuple[Subscription, ...] = ()
    dropped_earlier: int = 0
    asks: PendingAsks = attrs.Factory(PendingAsks)
    supervisor: Supervisor | None = None
    started_wall: datetime = attrs.Factory(lambda: datetime.now(UTC))
    endpoints: dict[str, EndpointCounters] = attrs.Factory(dict)

    def endpoint(self, capability: str) -> EndpointCounters:
        """The counters of one capability endpoint."""
        counters = self.endpoints.get(capability)
        if counters is None:
            counters = self.endpoints[capability] = EndpointCounters()
        return counters

    @property
    def in_flight(self) -> int:
        """Messages and capability calls being handled now."""
        return self.messages_in_flight + self.calls_in_flight

    @property
    def busy(self) -> bool:
        """True when every inbox worker, or every capability slot, is taken."""
        limit = self.spec.max_concurrency
        return self.messages_in_flight >= limit or self.calls_in_flight >= limit

    @property
    def restarts(self) -> int:
        """Restarts of the agent's children so far."""
        return self.supervisor.statistics().restarts if self.supervisor else 0

    @property
    def dropped(self) -> int:
        """Messages its inboxes dropped because they were full (since it started)."""
        current = sum(sub.statistics().dropped for sub in self.inbox_subscriptions)
        return self.dropped_earlier + current

    def inbox_closed(self) -> None:
        """Keep the drop count of the inbox that just stopped."""
        self.dropped_earlier = self.dropped
        self.inbox_subscriptions = ()

    def status(self, presence: Presence | None = None) -> AgentStatus:
        """The announce/heartbeat payload as of now."""
        spec = self.spec
        if presence is None:
            presence = Presence.BUSY if self.busy else Presence.ONLINE
        return AgentStatus(
            id=spec.id,
            name=spec.name,
            capabilities=spec.capabilities,
            status=presence,
            uptime=max(0.0, trio.current_time() - self.started_at),
            in_flight=self.in_flight,
            restarts=self.restarts,
            heartbeat_interval=spec.heartbeat_interval,
            instance=self.instance,
            node=self.node,
            replicated=spec.replicated,
            dropped=self.dropped,
            usage=self._usage(),
        )

    def _usage(self) -> Mapping[str, float] | None:
        usage = getattr(self.spec.handler, "usage", None)
        return usage() if callable(usage) else None


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
    """Capability calls served."""
    restarts: int
    """Restarts of its children."""
    malformed: int
    """Payloads on its inbox that were not valid messages."""
    dropped: int
    """Messages its inboxes dropped because they were full."""
    instance: str
    """Its instance id."""
    refused: int = 0
    """Messages whose task it refused (a loop, too deep, past its deadline)."""


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
        self.state = AgentState(spec, node=node, tasks=tasks)

    @property
    def instance(self) -> str:
        """This instance's id (fixed for the life of the object, across restarts)."""
        return self.state.instance

    @property
    def id(self) -> str:
        """The agent id."""
        return self.spec.id

    def statistics(self) -> AgentStatistics:
        """The counters as they are now."""
        state = self.state
        return AgentStatistics(
            id=self.spec.id,
            in_flight=state.in_flight,
            handled=state.handled,
            handler_errors=state.handler_errors,
            capability_calls=state.capability_calls,
            restarts=state.restarts,
            malformed=state.malformed,
            dropped=state.dropped,
            instance=state.instance,
            refused=state.refused,
        )

    def _children(self, bus: Bus) -> tuple[ChildSpec, ...]:
        spec, state = self.spec, self.state
        context = AgentContext(
            spec.id, spec.name, spec.capabilities, bus, state.asks, spec.request_timeout
        )
        starts: list[tuple[str, Callable[..., Awaitable[None]]]] = [
            ("inbox", Inbox(state, bus, context).run)
        ]
        if spec.capabilities:
            starts.append(("capabilities", CapabilityResponder(state, bus, context).run))
        starts.append(("heartbeat", Heartbeat(state, bus).run))
        starts.append(("announcer", Announcer(state, bus).run))
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
            self.state.supervisor = supervisor
            self.state.started_at = trio.current_time()
            self.state.started_wall = datetime.now(UTC)
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
