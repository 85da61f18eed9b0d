"""An agent: a supervisor whose children are the inbox, the capability
responder, the heartbeat and the announcer (started in that order, stopped in
reverse, so an agent is reachable before it says it exists and says goodbye
before it stops listening).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

import attrs
import trio

from volta.bus import Bus, BusOptions, SubscriptionStatistics, open_bus
from volta.core import ConfigError, ConfigProblem, ConfigTypeError, validators
from volta.core.validators import describe
from volta.protocol import (
    ID_RULE,
    MAX_BUDGET,
    MAX_TIMEOUT,
    AgentStatus,
    InvalidSubject,
    Presence,
    ProgressKind,
    is_id,
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

from ._announcer import Announcer, announce
from ._calls import PendingAsks
from ._cancel import TaskRegistry
from ._capabilities import CapabilityResponder, EndpointCounters, Endpoints
from ._context import AgentContext
from ._durable import DurableInboxes
from ._handler import Handler, HandlerRecipe
from ._heartbeat import Heartbeat
from ._inbox import Inbox, InboxRecord
from ._unit import TaskScope, UnitLimits, Units, UnitStatistics, WorkKind

log = logging.getLogger("volta.actors")

T = TypeVar("T")


DEFAULT_HEARTBEAT_INTERVAL = 30.0
"""Seconds between an agent's heartbeats, unless its spec (or its node) says."""
DEFAULT_REQUEST_TIMEOUT = 10.0
"""Default wait of ``ask``, ``list_agents`` and ``request_capability``, in seconds."""
THINKING_TASK_TIMEOUT = 120.0
"""The default ``task_timeout`` of an agent with a brain (one without has none)."""
THINKING_BUDGET = 50_000
"""The default ``budget`` of an agent with a brain (one without has none)."""


def _check_id(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ConfigTypeError(f"expected an agent id, got {describe(value)}", key=attribute.name)
    try:
        validate_own_agent_id(value)
    except InvalidSubject as error:
        raise ConfigError(str(error), key=attribute.name) from None


def _check_capabilities(
    _instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]
) -> None:
    """Each a valid name, none twice: every bad one reported, in order."""
    first_at: dict[str, int] = {}
    problems = []
    for index, name in enumerate(value):
        if not is_id(name):
            problems.append(
                ConfigProblem(
                    f"{attribute.name}[{index}]",
                    f"invalid capability {describe(name)}: use {ID_RULE}",
                )
            )
        elif name in first_at:
            problems.append(
                ConfigProblem(
                    f"{attribute.name}[{index}]",
                    f"duplicate capability {name!r} (first at {attribute.name}[{first_at[name]}])",
                )
            )
        else:
            first_at[name] = index
    if problems:
        raise ConfigError.from_problems(problems)


_NAMES = validators.strings("capabilities")


def _names(value: Any) -> tuple[str, ...]:
    return _NAMES(value)


def _read_only(value: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigTypeError(f"expected a mapping, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigTypeError(f"expected string keys, got the key {describe(key)}")
    # Read-only at the top level; the values are handed on as they were given.
    return MappingProxyType(dict(value))


def _options(value: Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        return _read_only(value)
    except ConfigError as error:
        raise ConfigTypeError(error.reason, key="options") from None


def _functions(value: Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        return _read_only(value)
    except ConfigError as error:
        raise ConfigTypeError(error.reason, key="functions") from None


_REFERENCE = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*:[^\W\d]\w*")
"""``package.module:attribute``."""


def _check_handler(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, Handler):
        return
    if not isinstance(value, str) or not (is_id(value) or _REFERENCE.fullmatch(value)):
        raise ConfigError(
            f"invalid handler {describe(value)}: expected a built-in handler name "
            "or 'package.module:attribute'",
            key=attribute.name,
        )


def _check_brain(instance: AgentSpec, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, HandlerRecipe):
        raise ConfigTypeError(
            f"expected a brain spec, got {type(value).__name__}", key=attribute.name
        )
    if value is not None and isinstance(instance.handler, str):
        # (A handler object beside a brain is the brain, built: volta.config.assemble.)
        raise ConfigError("give either 'handler' or 'brain', not both", key=attribute.name)
    if value is not None and instance.options:
        raise ConfigError(
            "options go to a handler factory: an agent with a brain takes none", key="options"
        )
    if value is None and instance.handler is None and not instance.functions:
        raise ConfigError(
            "required key is missing (or give the agent a 'brain', or 'functions')",
            key="handler",
        )


def _check_functions(
    instance: AgentSpec, attribute: attrs.Attribute[Any], value: Mapping[str, Any]
) -> None:
    problems = []
    for name, function in value.items():
        key = f"{attribute.name}.{name}"
        if isinstance(function, str):
            if not (is_id(function) or _REFERENCE.fullmatch(function)):
                problems.append(
                    ConfigProblem(
                        key,
                        "expected 'package.module:function' or a built-in capability, got "
                        f"{describe(function)}",
                    )
                )
                continue
        elif not callable(function):
            problems.append(ConfigProblem(key, f"expected a function, got {describe(function)}"))
            continue
        if name not in instance.capabilities:
            problems.append(ConfigProblem(key, "not one of the agent's capabilities"))
    if isinstance(instance.brain, HandlerRecipe):
        problems += instance.brain.problems(instance)
    if problems:
        raise ConfigError.from_problems(problems)


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def _thinking(default: object) -> Any:
    """A default that an agent with a brain has, and one without does not."""
    return attrs.Factory(lambda self: default if self.brain is not None else None, takes_self=True)


@attrs.frozen(kw_only=True)
class SupervisionPolicy:
    """How an agent's supervisor treats its children (``supervision`` in YAML)."""

    strategy: Strategy = attrs.field(
        default=Strategy.ONE_FOR_ONE, validator=attrs.validators.instance_of(Strategy)
    )
    """Which children restart when one fails: ``one_for_one``, ``one_for_all``,
    ``rest_for_one``."""
    max_restarts: int = attrs.field(default=5, validator=validators.integer(ge=0))
    """Restarts allowed within ``period`` before the supervisor gives up and escalates."""
    period: float = attrs.field(default=10.0, validator=validators.number(gt=0))
    """Window, in seconds, over which ``max_restarts`` is counted."""
    backoff: Backoff | None = None
    """Delay between restarts; None restarts at once."""
    shutdown_timeout: float = attrs.field(default=5.0, validator=validators.number(gt=0))
    """Seconds a child is given to stop before it is cancelled hard."""

    @property
    def intensity(self) -> Intensity:
        """The supervisor's restart intensity."""
        return Intensity(max_restarts=self.max_restarts, period=self.period)


@attrs.frozen(kw_only=True)
class AgentSpec:
    """Everything that defines one agent: an entry of ``agents`` in YAML, field for field.

    What the agent does is its ``handler`` (an object, or the name of one to build),
    or its ``brain``, and capabilities served by plain ``functions`` in front of either.
    A spec whose handler is not an object yet is built by ``volta.config.assemble``
    (which ``volta run`` calls) before an :class:`Agent` runs it.
    """

    id: str = attrs.field(validator=_check_id)
    """Unique id: 1-64 characters from ``A-Z a-z 0-9 _ -``; ``broadcast`` is reserved."""
    name: str = attrs.field(
        default=attrs.Factory(lambda self: self.id, takes_self=True), validator=validators.text
    )
    """Human-readable name (defaults to the id)."""
    capabilities: tuple[str, ...] = attrs.field(
        default=(),
        converter=_names,
        validator=_check_capabilities,
    )
    """Capabilities it serves to others (``capability.request``); unique."""
    handler: Handler | str | None = attrs.field(default=None, validator=_check_handler)
    """What it does with messages and capability calls: a handler object, or (to be
    built) a built-in handler's name (``echo``) or ``package.module:factory``."""
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_options, hash=False)
    """Given to the handler factory (read-only at the top level)."""
    functions: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_functions, validator=_check_functions, hash=False
    )
    """Capabilities served by plain callables: name -> a function, a built-in
    capability's name (``word_count``) or ``package.module:function``. The rest go to
    the handler or brain."""
    brain: HandlerRecipe | None = attrs.field(default=None, validator=_check_brain)
    """It thinks with a model instead of a ``handler`` (``volta.brains.BrainSpec``)."""
    max_concurrency: int = attrs.field(default=8, validator=validators.integer(ge=1))
    """Messages (and, separately, capability calls) handled at once."""
    capability_timeout: float = attrs.field(default=30.0, validator=validators.number(gt=0))
    """Seconds a capability call may take before it fails with ``timeout``."""
    replicated: bool = attrs.field(default=False, validator=validators.boolean)
    """Run it as one of several instances (other nodes, other containers) that share its
    messages and capability calls; without it, a second node starting the same id is
    refused."""
    inbox_buffer: int = attrs.field(default=1024, validator=validators.integer(ge=1))
    """Messages held (per inbox subscription) while the agent is busy; more are dropped,
    counted and reported."""
    inbox_max_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=validators.integer(ge=1))
    """Bytes held (per inbox subscription) while the agent is busy."""
    heartbeat_interval: float | None = attrs.field(
        default=None, validator=validators.optional(validators.number(gt=0))
    )
    """Seconds between heartbeats (null: its node's; run alone, 30)."""
    request_timeout: float | None = attrs.field(
        default=None, validator=validators.optional(validators.number(gt=0))
    )
    """Default wait of its ``ask``, ``list_agents`` and ``request_capability``, in
    seconds (null: its node's; run alone, 10)."""
    supervision: SupervisionPolicy | None = None
    """Restart policy of its children (null: its node's; run alone, the defaults)."""
    task_timeout: float | None = attrs.field(
        default=_thinking(THINKING_TASK_TIMEOUT),
        validator=validators.optional(validators.number(gt=0, le=MAX_TIMEOUT)),
    )
    """Seconds any unit may run: the deadline of a task it starts, the latest deadline of
    one that comes with its own (null: none; an agent with a brain: 120; at most a week)."""
    budget: int | None = attrs.field(
        default=_thinking(THINKING_BUDGET),
        validator=validators.optional(validators.integer(ge=0, le=MAX_BUDGET)),
    )
    """Tokens one task may spend on this agent, delegates included (null: no limit; an
    agent with a brain: 50,000; at most 10^12, what the wire carries)."""
    trace: bool = attrs.field(
        default=attrs.Factory(lambda self: self.brain is not None, takes_self=True),
        validator=validators.boolean,
    )
    """Publish the progress of tasks it starts itself too (tasks that come with a
    context always are; an agent with a brain: true)."""

    def settled(
        self,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        supervision: SupervisionPolicy | None = None,
    ) -> AgentSpec:
        """This spec with what it leaves to its node (null) filled in from these."""
        return attrs.evolve(
            self,
            heartbeat_interval=_given(self.heartbeat_interval, heartbeat_interval),
            request_timeout=_given(self.request_timeout, request_timeout),
            supervision=_given(self.supervision, supervision or SupervisionPolicy()),
        )


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
        durable: DurableInboxes | None = None,
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
            durable: the node's inbox stream (None: direct messages on core NATS).

        Raises:
            ValueError: neither ``bus`` nor ``bus_options`` is given.
        """
        if bus is None and bus_options is None:
            raise ValueError("an agent needs a shared bus or options for its own")
        if not isinstance(spec.handler, Handler):
            raise TypeError(
                f"agent {spec.id!r}: its handler is {spec.handler!r}, not a handler object: "
                "build it first (volta.config.assemble)"
            )
        self.spec = spec
        self._handler: Handler = spec.handler
        self._heartbeat_interval = _given(spec.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL)
        self._request_timeout = _given(spec.request_timeout, DEFAULT_REQUEST_TIMEOUT)
        self._supervision = _given(spec.supervision, SupervisionPolicy())
        self._bus = bus
        self._bus_options = bus_options
        self._on_event = on_event
        self._node = node
        self._durable = durable
        self._instance = new_instance_id()
        # What the children share, each handed only what it needs:
        self._asks = PendingAsks()
        self._announced = trio.Event()
        self._running_bus: Bus | None = None  # the connection of the current run
        self._inbox = InboxRecord()
        self._endpoints = Endpoints()
        self._context: AgentContext | None = None
        self._units = Units(
            spec.id,
            UnitLimits(spec.task_timeout, spec.budget, spec.trace),
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

    async def announce_again(self) -> None:
        """Announce once more, now (a directory called the roll), if it is running and
        has announced (one that has not yet announces when it starts).

        Raises:
            BusError: it could not be sent.
        """
        bus = self._running_bus
        if bus is not None and self._announced.is_set():
            await announce(bus, self.status(None), quietly=True)

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
        usage = getattr(self._handler, "usage", None)
        return AgentStatus(
            id=spec.id,
            name=spec.name,
            capabilities=spec.capabilities,
            status=presence,
            uptime=max(0.0, trio.current_time() - self._started_at),
            in_flight=messages + calls,
            restarts=self.restarts,
            heartbeat_interval=self._heartbeat_interval,
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
            spec.id,
            spec.name,
            spec.capabilities,
            bus,
            self._asks,
            self._request_timeout,
            durable=self._durable,
        )
        self._context = context
        inbox = Inbox(
            spec,
            self._handler,
            bus,
            context,
            self._units,
            asks=self._asks,
            record=self._inbox,
            announced=self._announced,
            durable=self._durable,
        )
        starts: list[tuple[str, Callable[..., Awaitable[None]]]] = [("inbox", inbox.run)]
        if spec.capabilities:
            responder = CapabilityResponder(
                spec,
                self._handler,
                bus,
                context,
                self._units,
                endpoints=self._endpoints,
                announced=self._announced,
            )
            starts.append(("capabilities", responder.run))
        heartbeat = Heartbeat(spec.id, self._heartbeat_interval, self.status, bus)
        starts.append(("heartbeat", heartbeat.run))
        announcer = Announcer(self.status, self._announced, bus)
        starts.append(("announcer", announcer.run))
        timeout = self._supervision.shutdown_timeout
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
            policy = self._supervision
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
            self._running_bus = bus
            self._started_at = trio.current_time()
            self.started_wall = datetime.now(UTC)
            try:
                await supervisor.run(task_status=task_status)
            finally:
                self._running_bus = None
                await self._close_handler()

    async def _close_handler(self) -> None:
        """Let a handler that holds connections (a brain) release them, bounded."""
        close = getattr(self._handler, "aclose", None)
        if close is None:
            return
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(self._supervision.shutdown_timeout),
        ):
            try:
                await close()
            except Exception as error:  # a handler's cleanup must not hide why the agent stopped
                log.warning("agent %s: closing its handler failed: %r", self.spec.id, error)
