"""Agents and nodes on a real nats-server, for the tests of actors, node and brains.

Rules: loopback only; a real nats-server per test; real time (no autojump_clock)
wherever the bus is involved, with every wait bounded by ``trio.fail_after``.
Intervals are shortened (heartbeats of 0.1-0.2 s) so the tests stay quick.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from volta.actors import AgentContext, AgentSpec, EchoHandler, Handler, SupervisionPolicy
from volta.actors._context import PendingAsks
from volta.bus import Bus, BusOptions, ReconnectPolicy
from volta.node import Node, NodeSpec
from volta.protocol import Message

FAST_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.1)


def agent(
    agent_id: str, capabilities: Sequence[str] = (), handler: Handler | None = None, **changes: Any
) -> AgentSpec:
    """An agent with test-friendly timings."""
    values: dict[str, Any] = {
        "heartbeat_interval": 0.2,
        "request_timeout": 5.0,
        "supervision": SupervisionPolicy(max_restarts=1000, period=1.0),
    }
    values.update(changes)
    return AgentSpec(
        id=agent_id, handler=handler or EchoHandler(), capabilities=capabilities, **values
    )


def seed_agents(**changes: Any) -> list[AgentSpec]:
    """The seed's three agents."""
    return [
        agent("alpha", ["echo", "uppercase"], **changes),
        agent("beta", ["word_count"], **changes),
        agent("gamma", ["word_count", "sum"], **changes),
    ]


def node_spec(url: str, agents: Sequence[AgentSpec], **changes: Any) -> NodeSpec:
    values: dict[str, Any] = {
        "nats": BusOptions(servers=(url,), reconnect=FAST_RECONNECT),
        "heartbeat_interval": 0.2,
        "request_timeout": 5.0,
        "claim_window": 0.05,
    }
    values.update(changes)
    return NodeSpec(agents=tuple(agents), **values)


@asynccontextmanager
async def running_node(spec: NodeSpec, bus: Bus | None = None) -> AsyncIterator[Node]:
    """A node running for the duration of the block, stopped in order after it."""
    node = Node(spec, bus=bus)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(node.run)
        yield node
        nursery.cancel_scope.cancel()


def client_context(bus: Bus, agent_id: str = "tester", timeout: float = 5.0) -> AgentContext:
    """The agent API for test code that is not itself an agent."""
    return AgentContext(agent_id, agent_id, (), bus, PendingAsks(), timeout)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


@attrs.define
class Recorder:
    """A handler that records what it sees and answers with a function."""

    answer: Callable[[Message], str | None] = lambda message: f"re: {message.message}"
    seen: list[Message] = attrs.Factory(list)

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        self.seen.append(message)
        return self.answer(message)

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return {"capability": capability, "input": input, "by": context.agent_id}
