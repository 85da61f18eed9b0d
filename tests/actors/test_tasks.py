"""Tasks across agents: loops, depth, deadlines, cancellation, budgets, progress.

Python handlers stand in for brains here (brains have their own tests): each one
asks, waits or spends the way a brain would, through the same AgentContext.
Real nats-server, real time, every wait bounded.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
import trio

from volta.actors import AgentContext, AskFailed, open_client
from volta.bus import NatsServer, open_bus
from volta.protocol import (
    TASK_CODEC,
    ErrorCode,
    Message,
    ProgressEvent,
    ProgressKind,
    TaskContext,
    TaskRefused,
)

from ..mesh import agent, node_spec, running_node, wait_until


@attrs.define
class Relay:
    """Asks the next agent of a route and returns its answer; the last one answers."""

    route: dict[str, str]
    seen: list[Message] = attrs.Factory(list)
    cancelled: list[str] = attrs.Factory(list)
    spend: int = 0
    hang: bool = False

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        self.seen.append(message)
        scope = context.task
        if scope is not None and self.spend:
            # What a brain does before it calls its model: check, then spend.
            available = scope.budget.available()
            if available is not None and available < self.spend:
                raise TaskRefused(ErrorCode.BUDGET_EXCEEDED, f"{context.agent_id} has {available}")
            scope.budget.charge(self.spend)
        nxt = self.route.get(context.agent_id)
        finished = False
        try:
            if nxt is None:
                if self.hang:
                    await trio.sleep_forever()
                finished = True
                return f"{context.agent_id} did it"
            answer = await context.ask(nxt, message.message, timeout=30)
            finished = True
        except AskFailed as failure:
            finished = True
            # Pass refusals up as they are (a brain would tell its model instead).
            raise TaskRefused(ErrorCode(failure.code), failure.message) from None
        finally:
            if not finished:  # cancelled (trio may group it: a finally sees it either way)
                self.cancelled.append(context.agent_id)
        return f"{context.agent_id} < {answer.message}"

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return input


async def test_a_loop_between_agents_is_refused(nats_server: NatsServer) -> None:
    """a asks b, b asks a: refused by the chain rule before b sends anything."""
    relay = Relay(route={"a": "b", "b": "a"})
    spec = node_spec(nats_server.url, [agent("a", handler=relay), agent("b", handler=relay)])
    async with running_node(spec), open_client(nats_server.url) as client:
        with pytest.raises(AskFailed) as caught:
            await client.ask("a", "go round", timeout=5)
    # a's ask to b failed because b refused to ask a: the code travels back up.
    assert caught.value.code == "loop_detected"
    assert caught.value.message.startswith("'a' is already working on this task (cli-")
    assert [m.sender for m in relay.seen] == [client.id, "a"]  # a was never asked twice


async def test_an_agent_refuses_a_task_that_passed_through_it(nats_server: NatsServer) -> None:
    """A hostile (or buggy) sender cannot make an agent work on its own task again."""
    spec = node_spec(nats_server.url, [agent("alpha")])
    async with running_node(spec), open_bus(nats_server.url) as bus:
        task = TaskContext.root("mallory").delegate("alpha", None)  # chain: mallory, alpha
        question = Message(
            sender="mallory",
            to="alpha",
            message="again?",
            metadata={"task": TASK_CODEC.to_dict(task)},
        )
        reply = (await bus.request("agent.alpha.message", question, timeout=5)).decode()
    assert reply.metadata["error"]["code"] == "loop_detected"


async def test_a_chain_longer_than_max_depth_is_refused(nats_server: NatsServer) -> None:
    route = {"a": "b", "b": "c", "c": "d"}
    relay = Relay(route=route)
    agents = [agent(n, handler=relay) for n in "abcd"]
    async with running_node(node_spec(nats_server.url, agents)), open_client(nats_server.url) as c:
        with pytest.raises(AskFailed) as caught:
            await c.ask("a", "deep", timeout=5, max_depth=3)  # cli, a, b: c is one too many
        answer = await c.ask("a", "deep enough", timeout=5, max_depth=5)
    assert caught.value.code == "too_deep"
    assert answer.message == "a < b < c < d did it"


async def test_the_deadline_travels_and_stops_the_work(nats_server: NatsServer) -> None:
    relay = Relay(route={"a": "b"}, hang=True)
    spec = node_spec(nats_server.url, [agent("a", handler=relay), agent("b", handler=relay)])
    async with running_node(spec), open_client(nats_server.url) as client:
        start = trio.current_time()
        with pytest.raises(AskFailed) as caught:
            await client.ask("a", "slow", timeout=0.5)
        elapsed = trio.current_time() - start
        await wait_until(lambda: "b" in relay.cancelled)
    # b stopped at the task's deadline (0.5 s), not at a's own 30 s ask timeout.
    assert caught.value.code == "deadline_exceeded"
    assert 0.45 <= elapsed < 2.0


async def test_work_past_its_deadline_is_not_started(nats_server: NatsServer) -> None:
    relay = Relay(route={})
    spec = node_spec(nats_server.url, [agent("a", handler=relay)])
    async with running_node(spec), open_bus(nats_server.url) as bus:
        late = TaskContext.root("mallory", timeout=0.0)
        await trio.sleep(0.01)
        question = Message(
            sender="mallory",
            to="a",
            message="too late",
            metadata={"task": TASK_CODEC.to_dict(late)},
        )
        reply = (await bus.request("agent.a.message", question, timeout=5)).decode()
    assert reply.metadata["error"]["code"] == "deadline_exceeded"
    assert relay.seen == []


async def test_cancelling_an_ask_cancels_the_work_on_every_agent_it_reached(
    nats_server: NatsServer,
) -> None:
    relay = Relay(route={"a": "b", "b": "c"}, hang=True)
    agents = [agent(n, handler=relay) for n in "abc"]
    async with running_node(node_spec(nats_server.url, agents)), open_client(nats_server.url) as c:
        with trio.move_on_after(0.5) as giving_up:
            await c.ask("a", "forever", timeout=30)  # the CLI's Ctrl-C does the same
        assert giving_up.cancelled_caught
        await wait_until(lambda: sorted(relay.cancelled) == ["a", "b", "c"], timeout=5)


async def test_progress_follows_the_task_across_agents(nats_server: NatsServer) -> None:
    relay = Relay(route={"a": "b"})
    spec = node_spec(nats_server.url, [agent("a", handler=relay), agent("b", handler=relay)])
    events: list[ProgressEvent] = []
    async with running_node(spec), open_client(nats_server.url) as client:
        answer = await client.ask("a", "trace me", timeout=5, on_progress=events.append)
        await wait_until(lambda: sum(e.kind is ProgressKind.ANSWERED for e in events) == 2)
    assert answer.message == "a < b did it"
    by_agent = {(e.agent, e.kind) for e in events}
    assert by_agent == {
        ("a", ProgressKind.STARTED),
        ("a", ProgressKind.ASKED),
        ("b", ProgressKind.STARTED),
        ("b", ProgressKind.ANSWERED),
        ("a", ProgressKind.ANSWERED),
    }
    # One tree: b's unit is a child of a's.
    span_a = next(e.span for e in events if e.agent == "a")
    parent_b = next(e.parent for e in events if e.agent == "b")
    assert parent_b == span_a
    assert len({e.task for e in events}) == 1


async def test_the_budget_is_shared_down_the_chain(nats_server: NatsServer) -> None:
    """Each unit spends 300 tokens; with 1,000 for the task, the third hop is refused."""
    relay = Relay(route={"a": "b", "b": "c"}, spend=300)
    agents = [agent(n, handler=relay) for n in "abc"]
    async with running_node(node_spec(nats_server.url, agents)), open_client(nats_server.url) as c:
        with pytest.raises(AskFailed) as caught:
            await c.ask("a", "spend", timeout=5, budget=1000)
        generous = await c.ask("a", "spend", timeout=5, budget=10_000)
    # a: 1000, spends 300, hands half of the 700 left (350) to b; b spends 300 and
    # hands half of its 50 (25) to c, which cannot spend 300: refused, up the chain.
    assert caught.value.code == "budget_exceeded"
    assert caught.value.message == "c has 25"
    assert caught.value.spent == 600  # a's 300 and b's 300: never more than the 1,000
    assert generous.message == "a < b < c did it"
    assert generous.metadata["usage"]["tokens"] == 900


async def test_a_malformed_task_is_refused_as_bad_request(nats_server: NatsServer) -> None:
    spec = node_spec(nats_server.url, [agent("alpha")])
    async with running_node(spec), open_bus(nats_server.url) as bus:
        for bad in ({"id": "t"}, {"id": "t", "spans": ["s"], "chain": ["a.b"]}, [1], "x"):
            question = json.dumps(
                {
                    "id": "q1",
                    "from": "mallory",
                    "to": "alpha",
                    "message": "hi",
                    "type": "query",
                    "metadata": {"task": bad},
                    "timestamp": "2026-11-25T18:00:00Z",
                }
            ).encode()
            reply = (await bus.request("agent.alpha.message", question, timeout=5)).decode()
            assert reply.metadata["error"]["code"] == "bad_request", bad
            assert reply.metadata["error"]["message"].startswith("invalid message: metadata.task")
