"""One unit of work, two transports: a message and a capability call end the same way.

The inbox and the capability responder both run their work through ``Units.run``
(actors/_unit.py): the same refusals, the same failures, the same counters and the
same progress events, whichever way the work came. Each test sends the same thing
both ways to one agent on a real nats-server and compares.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from volta.actors import AgentContext, AskFailed, CapabilityFailed, HandlerError, open_client
from volta.bus import NatsServer, open_bus
from volta.protocol import (
    CAPABILITY_REQUEST,
    CAPABILITY_REQUEST_CODEC,
    PROGRESS_CODEC,
    TASK_CODEC,
    CapabilityRequest,
    ErrorCode,
    Message,
    MessageType,
    ProgressEvent,
    ProgressKind,
    TaskContext,
    decode_capability_reply,
    progress_subject,
)

from ..mesh import agent, node_spec, running_node


class Failing:
    """Fails every message and every call the same way."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        raise self.error

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (HandlerError(ErrorCode.RATE_LIMITED, "slow down"), ErrorCode.RATE_LIMITED),
        (RuntimeError("boom"), ErrorCode.AGENT_ERROR),
    ],
    ids=["handler-error", "exception"],
)
async def test_a_handler_error_counts_the_same_on_both_paths(
    nats_server: NatsServer, error: Exception, code: ErrorCode
) -> None:
    spec = node_spec(nats_server.url, [agent("alpha", ["work"], handler=Failing(error))])
    async with running_node(spec) as node, open_client(nats_server.url) as client:
        with pytest.raises(AskFailed) as asked:
            await client.ask("alpha", "do it", timeout=5)
        with pytest.raises(CapabilityFailed) as called:
            await client.capability("work", "do it", timeout=5)
        stats = node.agents["alpha"].statistics()
    assert asked.value.code is called.value.code is code
    assert asked.value.message == called.value.message
    assert stats.messages is not None
    assert stats.calls is not None
    assert (stats.messages.failed, stats.messages.handler_errors) == (1, 1)
    assert (stats.calls.failed, stats.calls.handler_errors) == (1, 1)
    assert stats.handler_errors == 2
    assert (stats.messages.answered, stats.calls.answered, stats.handled) == (0, 0, 0)


async def test_a_refusal_and_a_malformed_task_count_the_same_on_both_paths(
    nats_server: NatsServer,
) -> None:
    looping = TASK_CODEC.to_dict(TaskContext.root("mallory").delegate("alpha", None))
    broken = {"id": "t", "spans": ["s"], "chain": ["a.b"]}
    spec = node_spec(nats_server.url, [agent("alpha", ["echo"])])
    codes = []
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        for task in (looping, broken):
            question = Message(
                sender="mallory",
                to="alpha",
                message="hi",
                type=MessageType.QUERY,
                metadata={"task": task},
            )
            answer = (await bus.request("agent.alpha.message", question, timeout=5)).decode()
            request = CapabilityRequest("echo", "hi", timeout=5, task=task)
            raw = await bus.request(
                CAPABILITY_REQUEST, CAPABILITY_REQUEST_CODEC.encode(request), timeout=6
            )
            reply = decode_capability_reply(raw.data)
            codes.append((answer.metadata["error"]["code"], reply.code))
        stats = node.agents["alpha"].statistics()
    assert codes == [("loop_detected", "loop_detected"), ("bad_request", "bad_request")]
    assert stats.messages is not None
    assert stats.calls is not None
    assert (stats.messages.refused, stats.messages.malformed) == (1, 1)
    assert (stats.calls.refused, stats.calls.malformed) == (1, 1)
    assert (stats.refused, stats.handler_errors) == (2, 0)
    assert (stats.messages.received, stats.calls.received) == (2, 2)


async def test_both_paths_publish_the_same_progress(nats_server: NatsServer) -> None:
    spec = node_spec(nats_server.url, [agent("alpha", ["echo"])])
    task = TaskContext.root("tester", budget=100, task_id="t1").delegate("tester2", 50)
    async with (
        running_node(spec),
        open_bus(nats_server.url) as bus,
        bus.subscribe(progress_subject("t1")) as progress,
    ):
        await bus.flush()
        question = Message(
            sender="tester",
            to="alpha",
            message="hello",
            type=MessageType.QUERY,
            metadata={"task": TASK_CODEC.to_dict(task)},
        )
        answer = (await bus.request("agent.alpha.message", question, timeout=5)).decode()
        request = CapabilityRequest("echo", "hello", timeout=5, task=TASK_CODEC.to_dict(task))
        raw = await bus.request(
            CAPABILITY_REQUEST, CAPABILITY_REQUEST_CODEC.encode(request), timeout=6
        )
        events: list[ProgressEvent] = []
        with trio.fail_after(5):
            while len(events) < 4:
                events.append(PROGRESS_CODEC.decode((await progress.receive()).data))
    reply = decode_capability_reply(raw.data)
    assert (answer.message, reply.result) == ("hello", "hello")
    # Both answers say what the unit spent (the caller holds a reservation to settle).
    assert (answer.metadata["usage"], reply.tokens) == ({"tokens": 0}, 0)
    kinds = [(event.kind, event.detail) for event in events]
    assert kinds == [
        (ProgressKind.STARTED, "hello"),
        (ProgressKind.ANSWERED, "hello"),
        (ProgressKind.STARTED, "capability echo"),
        (ProgressKind.ANSWERED, "hello"),
    ]
    assert {event.parent for event in events} == {task.parent_span}
    assert {event.span for event in events} == {task.span}


class Delegating:
    """Its work is another's: an ask to nobody, a capability nobody serves."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        await context.ask("nobody", message.message, timeout=2)
        return "never"

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return await context.request_capability("nowhere", input, timeout=2)


async def test_a_call_that_failed_fails_the_unit_with_its_own_code(
    nats_server: NatsServer,
) -> None:
    """The sender learns why (no_agent, no_capability), not a Python repr of an exception."""
    spec = node_spec(nats_server.url, [agent("alpha", ["work"], handler=Delegating())])
    async with running_node(spec) as node, open_client(nats_server.url) as client:
        with pytest.raises(AskFailed) as asked:
            await client.ask("alpha", "pass it on", timeout=5)
        with pytest.raises(CapabilityFailed) as called:
            await client.capability("work", "pass it on", timeout=5)
        stats = node.agents["alpha"].statistics()
    assert (asked.value.code, asked.value.message) == ("no_agent", "no agent 'nobody' is online")
    assert called.value.code == "no_capability"
    assert called.value.message == "no online agent has the capability 'nowhere'"
    assert stats.handler_errors == 2
