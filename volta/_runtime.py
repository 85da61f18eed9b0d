"""From a loaded configuration to a running node: the wiring between
``volta.config`` (what to run) and ``volta.actors`` (how it runs).
"""

from __future__ import annotations

import gc
import logging
import signal

import trio

from volta._nursery import open_nursery
from volta.actors import (
    BUILTIN_CAPABILITIES,
    BUILTIN_HANDLERS,
    AgentSpec,
    Handler,
    Node,
    NodeSpec,
    SupervisionPolicy,
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


def node_spec(config: VoltaConfig, *, source: str | None = None) -> NodeSpec:
    """Build the node a configuration describes, handlers included.

    Raises:
        ConfigError: with every handler that cannot be built (``agents[1].handler``)
            and every capability that a handler says it cannot serve
            (``agents[0].capabilities[2]``), in agent order.
    """
    policy = supervision_policy(config.supervision)
    agents = []
    problems: list[ConfigProblem] = []
    for index, agent in enumerate(config.agents):
        key = f"agents[{index}]"
        try:
            handler = resolve_handler(agent.handler, agent.options)
        except (ValueError, TypeError) as error:
            problems.append(ConfigProblem(f"{key}.handler", str(error)))
            continue
        problems += _unserved(agent, handler, key)
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
        ids = ", ".join(node.agents)
        log.info("node running with agents %s; Ctrl-C (SIGINT) or SIGTERM stops it", ids)
        task_status.started(node)
