"""One unit of work, two transports: a message and a capability call end the same way.

The inbox and the capability responder both run their work through ``Units.run``
(actors/_unit.py): the same refusals, the same failures, the same counters and the
same progress events, whichever way the work came. Each test sends the same thing
both ways to one agent on a real nats-server and compares.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio

from volta.actors import AgentContext, AskFailed, CapabilityFailed, HandlerError, open_client
from volta.actors._unit import Failed, TaskScope, UnitLimits, Units, UnitStatistics, Work, WorkKind
from volta.bus import BusOptions, NatsServer, open_bus
from volta.protocol import (
    CAPABILITY_REQUEST,
    CAPABILITY_REQUEST_CODEC,
    PROGRESS_CODEC,
    TASK_CODEC,
    CapabilityReply,
    CapabilityRequest,
    ErrorCode,
    Message,
    MessageType,
    ProgressEvent,
    ProgressKind,
    TaskContext,
    TaskRefused,
    capability_endpoint,
    decode_capability_reply,
    progress_subject,
)

from ..mesh import FAST_RECONNECT, agent, client_context, node_spec, running_node, wait_until
from .test_agents import Hangs


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
        for _ in range(2):  # each one counts (not only the first)
            with pytest.raises(AskFailed) as asked:
                await client.ask("alpha", "do it", timeout=5)
            with pytest.raises(CapabilityFailed) as called:
                await client.capability("work", "do it", timeout=5)
        stats = node.agents["alpha"].statistics()
    assert asked.value.code is called.value.code is code
    assert asked.value.message == called.value.message
    assert stats.messages is not None
    assert stats.calls is not None
    assert (stats.messages.failed, stats.messages.handler_errors) == (2, 2)
    assert (stats.calls.failed, stats.calls.handler_errors) == (2, 2)
    assert stats.handler_errors == 4
    assert (stats.messages.answered, stats.calls.answered, stats.handled) == (0, 0, 0)


async def test_a_refusal_and_a_malformed_task_count_the_same_on_both_paths(
    nats_server: NatsServer,
) -> None:
    looping = TASK_CODEC.to_dict(TaskContext.root("mallory").delegate("alpha", None))
    broken = {"id": "t", "spans": ["s"], "chain": ["a.b"]}
    spec = node_spec(nats_server.url, [agent("alpha", ["echo"])])
    codes = []
    words = []
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
            words.append((answer.metadata["error"]["message"], reply.message))
        stats = node.agents["alpha"].statistics()
    assert codes == [("loop_detected", "loop_detected"), ("bad_request", "bad_request")]
    # The malformed field is named as each transport carries the task.
    invalid = "chain[0]: invalid agent id 'a.b': use 1-64 characters from A-Z a-z 0-9 _ -"
    assert words == [
        ("the task has already passed through 'alpha' (mallory -> alpha -> alpha)",) * 2,
        (f"invalid message: metadata.task.{invalid}", f"task.{invalid}"),
    ]
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


class Returns:
    """Answers a message with nothing; a capability ``word`` with a JSON value, any other
    with a value JSON cannot carry."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        return None

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return {"word": input} if capability == "word" else {"tags": {1, 2}}


async def test_the_answered_progress_says_what_came_back(nats_server: NatsServer) -> None:
    """Nothing is an empty detail; a value is its JSON, non-ASCII kept as it is; a value
    JSON cannot carry is shown by its repr, and the caller still gets its one reply."""
    spec = node_spec(nats_server.url, [agent("alpha", ["word", "odd"], handler=Returns())])
    task = TASK_CODEC.to_dict(TaskContext.root("tester", task_id="t2"))
    async with (
        running_node(spec),
        open_bus(nats_server.url) as bus,
        bus.subscribe(progress_subject("t2")) as progress,
    ):
        await bus.flush()
        note = Message(sender="tester", to="alpha", message="note", metadata={"task": task})
        await bus.publish("agent.alpha.message", note)
        events: list[ProgressEvent] = []
        with trio.fail_after(5):
            while len(events) < 2:
                events.append(PROGRESS_CODEC.decode((await progress.receive()).data))
        replies = []
        for capability in ("word", "odd"):
            request = CapabilityRequest(capability, "naïve", timeout=5, task=task)
            raw = await bus.request(
                CAPABILITY_REQUEST, CAPABILITY_REQUEST_CODEC.encode(request), timeout=6
            )
            replies.append(decode_capability_reply(raw.data))
        with trio.fail_after(5):
            while len(events) < 6:
                events.append(PROGRESS_CODEC.decode((await progress.receive()).data))
    assert [(event.kind, event.detail) for event in events] == [
        (ProgressKind.STARTED, "note"),
        (ProgressKind.ANSWERED, ""),
        (ProgressKind.STARTED, "capability word"),
        (ProgressKind.ANSWERED, '{"word": "naïve"}'),
        (ProgressKind.STARTED, "capability odd"),
        (ProgressKind.ANSWERED, '{"tags": "{1, 2}"}'),
    ]
    assert (replies[0].ok, replies[0].result) == (True, {"word": "naïve"})
    assert (replies[1].code, replies[1].message) == (
        ErrorCode.UNENCODABLE,
        "the result cannot be sent as JSON: cannot encode as JSON: $.result.tags: "
        "set is not a JSON type",
    )


@attrs.define
class Delegates:
    """Asks beta about every message it gets, and keeps what came of each ask."""

    outcomes: dict[str, tuple[str, str]] = attrs.Factory(dict)

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        try:
            answer = await context.ask("beta", message.message, timeout=5)
        except TaskRefused as refused:
            self.outcomes[message.message] = (refused.code.value, refused.message)
        else:
            self.outcomes[message.message] = ("answered", answer.message)
        return None

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return input


async def test_a_broadcast_has_no_budget_to_delegate_with(nats_server: NatsServer) -> None:
    """One message to every agent must not set every agent working: a broadcast's unit
    has a budget of 0, whatever the agent's own limit (none here), so it cannot ask."""
    delegates = Delegates()
    agents = [agent("alpha", handler=delegates), agent("beta")]
    async with running_node(node_spec(nats_server.url, agents)), open_bus(nats_server.url) as bus:
        await client_context(bus).broadcast("news")
        await client_context(bus).send("alpha", "hello")
        with trio.fail_after(5):
            while len(delegates.outcomes) < 2:
                await trio.sleep(0.01)
    assert delegates.outcomes == {
        "news": ("budget_exceeded", "the task's budget is spent (0 of 0 tokens)"),
        "hello": ("answered", "hello"),
    }


async def test_a_handler_exception_is_logged_naming_the_agent_and_the_work(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A WARNING per kind of work and window, naming the agent, the message or the
    capability, and the error; the next ones within ``report_interval`` are summarised
    by kind when the window has passed."""
    caplog.set_level(logging.WARNING, "volta.actors.unit")
    failing = agent("alpha", ["work"], handler=Failing(RuntimeError("boom")))
    options = BusOptions(servers=(nats_server.url,), reconnect=FAST_RECONNECT, report_interval=1.0)
    spec = node_spec(nats_server.url, [failing], nats=options)
    async with running_node(spec), open_bus(nats_server.url) as bus:

        async def both(n: int) -> None:
            question = Message(sender="tester", to="alpha", message="do it", id=f"m{n}")
            answer = (await bus.request("agent.alpha.message", question, timeout=5)).decode()
            assert answer.metadata["error"]["code"] == "agent_error"
            request = CapabilityRequest("work", "do it", timeout=5)
            raw = await bus.request(
                CAPABILITY_REQUEST, CAPABILITY_REQUEST_CODEC.encode(request), timeout=6
            )
            assert decode_capability_reply(raw.data).code is ErrorCode.AGENT_ERROR

        await both(1)
        await both(2)
        await trio.sleep(1.1)  # the windows end: the next failures bring their summaries
        await both(3)
    lines = [r.getMessage() for r in caplog.records if r.name == "volta.actors.unit"]
    assert lines == [
        "agent alpha: message m1 failed: RuntimeError('boom')",
        "agent alpha: capability work failed: RuntimeError('boom')",
        "1 more message failures on message in the last 1 s",
        "agent alpha: message m3 failed: RuntimeError('boom')",
        "1 more capability failures on capability in the last 1 s",
        "agent alpha: capability work failed: RuntimeError('boom')",
    ]
    assert {r.levelno for r in caplog.records if r.name == "volta.actors.unit"} == {logging.WARNING}


class SpendsThenHangs:
    """Spends 30 tokens of its unit's budget, then works for ever."""

    async def _work(self, context: AgentContext) -> None:
        scope = context.task
        assert scope is not None
        scope.budget.charge(30)
        await trio.sleep_forever()

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        await self._work(context)
        return None

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        await self._work(context)


async def test_a_unit_interrupted_by_its_agent_stopping_says_what_it_spent(
    nats_server: NatsServer,
) -> None:
    """The caller holds a reservation for the unit: the interruption answer tells it what
    was spent, so it settles for that instead of forfeiting the whole allowance."""
    spec = node_spec(nats_server.url, [agent("busy", ["work"], handler=SpendsThenHangs())])
    task = TASK_CODEC.to_dict(TaskContext.root("tester", budget=1000))
    answers: list[Message] = []
    replies: list[CapabilityReply] = []
    async with open_bus(nats_server.url) as bus, trio.open_nursery() as nursery:

        async def ask() -> None:
            question = Message(
                sender="tester",
                to="busy",
                message="take your time",
                type=MessageType.QUERY,
                metadata={"task": task},
            )
            answers.append((await bus.request("agent.busy.message", question, timeout=5)).decode())

        async def call() -> None:
            request = CapabilityRequest("work", "take your time", timeout=5, task=task)
            raw = await bus.request(
                capability_endpoint("work"), CAPABILITY_REQUEST_CODEC.encode(request), timeout=5
            )
            replies.append(decode_capability_reply(raw.data))

        async with running_node(spec) as node:
            nursery.start_soon(ask)
            nursery.start_soon(call)
            await wait_until(lambda: node.agents["busy"].statistics().in_flight == 2)
        # The node stopped in order while both were in flight.
    [answer] = answers
    [reply] = replies
    assert answer.metadata["error"] == {
        "code": "agent_error",
        "message": "interrupted: the inbox stopped",
    }
    assert answer.metadata["usage"] == {"tokens": 30}
    assert (reply.code, reply.message, reply.tokens) == (
        ErrorCode.AGENT_ERROR,
        "interrupted: the capability responder is restarting",
        30,
    )


async def test_an_agents_task_timeout_bounds_work_that_came_without_a_task(
    nats_server: NatsServer,
) -> None:
    """No task on the wire: the unit starts a task of its own, with the agent's
    ``task_timeout`` as its deadline."""
    spec = node_spec(nats_server.url, [agent("slow", handler=Hangs(), task_timeout=0.3)])
    async with running_node(spec), open_bus(nats_server.url) as bus:
        question = Message(sender="tester", to="slow", message="hi", type=MessageType.QUERY)
        start = trio.current_time()
        answer = (await bus.request("agent.slow.message", question, timeout=5)).decode()
        elapsed = trio.current_time() - start
    assert answer.metadata["error"] == {
        "code": "deadline_exceeded",
        "message": "the task's deadline passed while slow worked on it",
    }
    assert 0.3 <= elapsed < 1.5


class Allowance:
    """Answers with the allowance of the unit it runs in."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        scope = context.task
        assert scope is not None
        return str(scope.budget.allowance)

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return None


async def test_an_agents_budget_caps_what_a_task_from_the_wire_allows(
    nats_server: NatsServer,
) -> None:
    """A task that names no budget, or more than the agent allows, gets the agent's
    ``budget``; a smaller one keeps its own."""
    spec = node_spec(nats_server.url, [agent("capped", handler=Allowance(), budget=100)])
    async with running_node(spec), open_client(nats_server.url) as client:
        allowances = [
            (await client.ask("capped", "how much?", budget=budget, timeout=5)).message
            for budget in (None, 1000, 100, 50)
        ]
    assert allowances == ["100", "100", "100", "50"]


async def unwatched(kind: ProgressKind, detail: str, scope: TaskScope) -> None:
    """Progress nobody hears."""


async def test_a_malformed_task_beyond_the_error_answers_allowed_is_refused_quietly() -> None:
    """``Units.run`` alone (no bus): a malformed task is refused before anything runs,
    counted each time, and marked quiet (not to be answered) when the transport's
    allowance of error answers says no; without an allowance to ask, always said."""
    units = Units("alpha", UnitLimits(), unwatched)
    broken = {"id": "t", "spans": ["s"], "chain": ["a.b"]}
    work = Work.message("tester", "m1", "hi", broken, broadcast=False)

    async def never_called() -> None:
        raise AssertionError("the handler ran for a malformed task")

    async def never_interrupted(failure: Failed) -> None:
        raise AssertionError("interrupted")

    outcomes = [
        await units.run(work, never_called, interrupted=never_interrupted, admit_refusal=admit)
        for admit in (lambda: True, lambda: False, None)
    ]
    invalid = "chain[0]: invalid agent id 'a.b': use 1-64 characters from A-Z a-z 0-9 _ -"
    words = f"invalid message: metadata.task.{invalid}"
    assert [
        (outcome.code, outcome.message, outcome.quiet)
        for outcome in outcomes
        if isinstance(outcome, Failed)
    ] == [
        (ErrorCode.BAD_REQUEST, words, False),
        (ErrorCode.BAD_REQUEST, words, True),
        (ErrorCode.BAD_REQUEST, words, False),
    ]
    assert units.statistics(WorkKind.MESSAGE) == UnitStatistics(
        received=3, answered=0, failed=0, handler_errors=0, refused=0, malformed=3, in_flight=0
    )


async def test_work_without_a_task_is_never_refused_even_from_the_agent_itself(
    nats_server: NatsServer,
) -> None:
    """The refusals (loop, depth, deadline) are a task's rules: work without one starts
    a task of its own, so a note an agent sends itself outside any unit is no loop."""
    spec = node_spec(nats_server.url, [agent("alpha")])
    async with running_node(spec), open_bus(nats_server.url) as bus:
        answer = await client_context(bus, "alpha").ask("alpha", "note to self", timeout=5)
    assert answer.message == "note to self"
