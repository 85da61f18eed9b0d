"""From a loaded configuration to a running node: the wiring between
``volta.config`` (what to run) and ``volta.actors`` (how it runs).
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Mapping

import trio

from volta._brains import build_brain
from volta.actors import AgentSpec, Handler, SupervisionPolicy
from volta.actors._functions import FunctionCapabilities, resolve_function
from volta.actors._handler import (
    BUILTIN_CAPABILITIES,
    BUILTIN_HANDLERS,
    handler_serves,
    resolve_handler,
)
from volta.config import (
    AgentConfig,
    ConfigError,
    ConfigProblem,
    ConnectionMode,
    SupervisionConfig,
    VoltaConfig,
)
from volta.core import open_nursery
from volta.node import Node, NodeSpec
from volta.supervisor import Backoff, Intensity, Strategy, stop_on_signals

log = logging.getLogger("volta")


def supervision_policy(config: SupervisionConfig) -> SupervisionPolicy:
    """The agent supervision policy a configuration describes."""
    backoff = None
    if config.backoff is not None:
        backoff = Backoff(
            initial=config.backoff.initial,
            maximum=config.backoff.maximum,
            multiplier=config.backoff.multiplier,
            jitter=config.backoff.jitter,
        )
    return SupervisionPolicy(
        strategy=Strategy(config.strategy.value),
        intensity=Intensity(max_restarts=config.max_restarts, period=config.period),
        backoff=backoff,
        shutdown_timeout=config.shutdown_timeout,
    )


def _unserved(agent: AgentConfig, handler: Handler, key: str) -> list[ConfigProblem]:
    """A problem for each capability of ``agent`` that its handler says it cannot serve."""
    unserved = [
        (index, capability)
        for index, capability in enumerate(agent.capabilities)
        if handler_serves(handler, capability) is False
    ]
    if not unserved:
        return []
    hint = ""
    if agent.handler in BUILTIN_HANDLERS:
        # What a built-in handler can serve is known: the built-in capabilities.
        served = sorted(name for name in BUILTIN_CAPABILITIES if handler_serves(handler, name))
        hint = f" (it serves: {', '.join(served)})"
    return [
        ConfigProblem(
            f"{key}.capabilities[{index}]",
            f"handler {agent.handler!r} cannot serve {capability!r}{hint}",
        )
        for index, capability in unserved
    ]


def _handler(
    agent: AgentConfig, key: str, source: str | None, environ: Mapping[str, str]
) -> tuple[Handler, list[ConfigProblem]]:
    """The handler (or brain) of one agent, behind its function capabilities.

    Raises:
        ConfigError: the handler cannot be built (one problem, for its key).
    """
    handler: Handler
    if agent.brain is not None:
        handler = build_brain(agent, key, source=source, environ=environ)
    else:
        assert agent.handler is not None
        try:
            handler = resolve_handler(agent.handler, agent.options)
        except (ValueError, TypeError) as error:
            raise ConfigError(str(error), key=f"{key}.handler") from None
    problems = []
    functions = {}
    for name, reference in agent.functions.items():
        try:
            functions[name] = resolve_function(reference)
        except ValueError as error:
            problems.append(ConfigProblem(f"{key}.functions.{name}", str(error)))
    if functions:
        handler = FunctionCapabilities(handler, functions)
    return handler, problems


def node_spec(
    config: VoltaConfig,
    *,
    source: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeSpec:
    """Build the node a configuration describes, handlers included.

    Raises:
        ConfigError: with every handler that cannot be built (``agents[1].handler``)
            and every capability that a handler says it cannot serve
            (``agents[0].capabilities[2]``), in agent order.
    """
    policy = supervision_policy(config.supervision)
    agents = []
    problems: list[ConfigProblem] = []
    environ = environ if environ is not None else {}
    for index, agent in enumerate(config.agents):
        key = f"agents[{index}]"
        try:
            handler, function_problems = _handler(agent, key, source, environ)
        except ConfigError as error:
            problems += error.problems
            continue
        problems += function_problems
        problems += _unserved(agent, handler, key)
        brain = agent.brain
        agents.append(
            AgentSpec(
                id=agent.id,
                name=agent.name,
                handler=handler,
                capabilities=agent.capabilities,
                max_concurrency=agent.max_concurrency,
                heartbeat_interval=config.heartbeat_interval,
                capability_timeout=agent.capability_timeout,
                request_timeout=config.request_timeout,
                inbox_buffer=agent.inbox_buffer,
                inbox_max_bytes=agent.inbox_max_bytes,
                replicated=agent.replicated,
                task_timeout=brain.task_timeout if brain is not None else None,
                task_budget=brain.budget if brain is not None else None,
                trace=brain is not None,
                supervision=policy,
            )
        )
    if problems:
        raise ConfigError.from_problems(problems, source=source)
    return NodeSpec(
        agents=tuple(agents),
        bus_options=config.nats.bus_options(),
        shared_connection=config.connection is ConnectionMode.SHARED,
        heartbeat_interval=config.heartbeat_interval,
        offline_after_missed=config.offline_after_missed,
        request_timeout=config.request_timeout,
        name=config.nats.name or "volta",
        forget_after=config.directory.forget_after,
        max_agents=config.directory.max_agents,
    )


def _innermost(handler: Handler) -> Handler:
    while isinstance(handler, FunctionCapabilities):
        handler = handler.handler
    return handler


async def serve(
    spec: NodeSpec, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a node until SIGINT or SIGTERM, then stop it in order.

    Raises:
        IdentityConflict: every agent's id was already taken (nothing started).
        SupervisorEscalation: the node gave up (too many agent restarts).
        ConnectFailed: NATS could not be reached (and retrying was off).
    """
    node = Node(spec)
    async with open_nursery() as nursery:
        await nursery.start(stop_on_signals, nursery.cancel_scope, (signal.SIGINT, signal.SIGTERM))
        await nursery.start(node.run)
        # Everything built so far lives as long as the node: move it out of the
        # cyclic collector's sight (with 1,000 agents a full collection took 340 ms).
        gc.freeze()
        for agent in node.agents.values():
            describe = getattr(_innermost(agent.spec.handler), "describe", None)
            if callable(describe):
                log.info("agent %s thinks with %s", agent.id, describe())
        ids = ", ".join(node.agents)
        log.info("node running with agents %s; Ctrl-C (SIGINT) or SIGTERM stops it", ids)
        task_status.started(node)
