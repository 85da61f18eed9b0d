"""The inbox, path by path: what each branch of ``actors/_inbox.py`` does that a
peer can see.

Replicas of one agent share a queue group (one copy per message); the inbox
bounds drop a flood and count it; a response that answers an ``ask`` goes to
the asker, others reach the handler and are never answered, nor is a ``None``;
refusals name the field and the reason and come back once their token bucket
refills; the in-flight and handled counters move by exactly one; answers and
errors carry the agent as sender (a broadcast has no receiver to default to),
go to the NATS reply subject while the message is handled and to
``agent.<from>.message`` without one; error texts are cut to 1000 characters;
an answer that cannot be encoded or is not a ``str`` is an error for that
message alone.

Rules: a real nats-server per test, real time, every wait under ``fail_after``;
"nothing was sent" is shown by a later message that is answered first (one
worker: messages are handled, and answered, in arrival order).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
import trio

from volta.actors import AgentContext, AskFailed, EchoHandler, HandlerError
from volta.actors._calls import PendingAsks
from volta.actors._inbox import Inbox, InboxRecord
from volta.actors._unit import Answered, Failed, TaskScope, UnitLimits, Units
from volta.bus import BusOptions, Delivery, NatsServer, Subscription, open_bus
from volta.protocol import (
    AGENT_BROADCAST,
    ErrorCode,
    Message,
    MessageType,
    ProgressKind,
    ProtocolError,
    encode_message,
)

from ..mesh import Recorder, agent, client_context, node_spec, running_node, wait_until


def to_alpha(text: str, **changes: Any) -> Message:
    """A message from ``tester`` to ``alpha``."""
    values: dict[str, Any] = {"sender": "tester", "to": "alpha", "message": text}
    values.update(changes)
    return Message(**values)


async def next_message(box: Subscription, timeout: float = 2.0) -> Message:
    with trio.fail_after(timeout):
        return (await box.receive()).decode()


class Gate(EchoHandler):
    """Records each message, then waits for a ticket before it answers ``re: <text>``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Message] = []
        self.tickets, self._tickets = trio.open_memory_channel[None](math.inf)

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        self.seen.append(message)
        await self._tickets.receive()
        return f"re: {message.message}"


# -- run: the queue group and the bounds ---------------------------------------------------


async def test_replicas_of_one_agent_get_one_copy_of_each_message_and_broadcast(
    nats_server: NatsServer,
) -> None:
    recorders = [Recorder(), Recorder()]
    async with (
        running_node(
            node_spec(nats_server.url, [agent("rep", replicated=True, handler=recorders[0])])
        ),
        running_node(
            node_spec(nats_server.url, [agent("rep", replicated=True, handler=recorders[1])])
        ),
        open_bus(nats_server.url) as bus,
        bus.subscribe("agent.tester.message") as box,
    ):
        await bus.flush()
        sender = client_context(bus)
        count = 20
        answered: list[str] = []
        # Two rounds: a late second answer to the first round shows up in the second.
        for round_ in range(2):
            sent = set()
            for n in range(count):
                sent.add((await sender.send("rep", f"direct {round_}.{n}")).id)
                sent.add((await sender.broadcast(f"everyone {round_}.{n}")).id)
            while sent - set(answered):
                answer = await next_message(box, 5)
                assert answer.in_reply_to not in answered, (
                    f"two replicas answered {answer.in_reply_to}: one copy per message"
                )
                assert answer.in_reply_to in sent
                answered.append(answer.in_reply_to)
        await bus.flush()
        assert box.statistics().pending == 0, "a replica answered a message twice"
    assert sum(len(r.seen) for r in recorders) == 4 * count, "one copy per message and broadcast"
    # The group shares the work (by chance: all 80 to one of two is 2**-79).
    assert all(r.seen for r in recorders), "both replicas share the agent's messages"


@pytest.mark.parametrize("bound", ["messages", "bytes"])
@pytest.mark.parametrize("subject", ["direct", "broadcast"])
async def test_a_flood_beyond_the_inbox_bounds_is_dropped_and_counted(
    nats_server: NatsServer, subject: str, bound: str
) -> None:
    """5 messages (or their bytes) per subscription: a blocked agent holds no more."""
    gate = Gate()
    flood = 60
    payloads = [
        encode_message(
            to_alpha(
                "x" * 200, id=f"flood-{n:04d}", to="alpha" if subject == "direct" else "broadcast"
            )
        )
        for n in range(flood)
    ]
    size = len(payloads[0])
    assert all(len(p) == size for p in payloads)
    limits: dict[str, Any] = (
        {"inbox_buffer": 5}
        if bound == "messages"
        else {"inbox_buffer": 1000, "inbox_max_bytes": 5 * size}
    )
    spec = node_spec(nats_server.url, [agent("alpha", handler=gate, max_concurrency=1, **limits)])
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe("agent.tester.message") as box,
    ):
        await bus.flush()
        target = "agent.alpha.message" if subject == "direct" else AGENT_BROADCAST
        for payload in payloads:
            await bus.publish(target, payload)
        alpha = node.agents["alpha"]
        index = 0 if subject == "direct" else 1

        def arrived() -> int:
            stats = alpha.inbox_statistics()[index]
            return stats.delivered + stats.pending + stats.dropped

        # One in the handler, one read and waiting for the worker, the rest held or dropped.
        await wait_until(lambda: arrived() == flood and len(gate.seen) == 1)
        stats = alpha.inbox_statistics()[index]
        assert stats.pending <= 5, f"the inbox held {stats.pending} messages, beyond its bounds"
        assert stats.pending_bytes <= 5 * size
        assert stats.delivered <= 2
        assert stats.dropped == flood - stats.delivered - stats.pending >= flood - 7
        assert alpha.statistics().dropped == stats.dropped, "the drops are counted"
        # What was held is handled once the agent gets going again.
        kept = flood - stats.dropped
        for _ in range(kept):
            gate.tickets.send_nowait(None)
        answers = [await next_message(box) for _ in range(kept)]
        await wait_until(lambda: alpha.statistics().handled == kept)
    assert [a.in_reply_to for a in answers] == [m.id for m in gate.seen]


# -- _read: responses, and the agent's own broadcasts ---------------------------------------


class Asker(EchoHandler):
    """Asks ``peer`` about each query it gets; records the responses it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.responses: list[Message] = []

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        if message.type is MessageType.RESPONSE:
            self.responses.append(message)
            return "never sent"
        answer = await context.ask("peer", message.message, timeout=2)
        return f"peer says: {answer.message}"


async def test_a_response_on_the_inbox_answers_the_ask_and_never_reaches_the_handler(
    nats_server: NatsServer,
) -> None:
    """A peer that ignores reply subjects answers on ``agent.asker.message``."""
    asker = Asker()
    async with (
        running_node(node_spec(nats_server.url, [agent("asker", handler=asker)])),
        open_bus(nats_server.url) as bus,
        bus.subscribe("agent.peer.message") as peer,
        trio.open_nursery() as nursery,
    ):
        await bus.flush()

        async def serve() -> None:
            async for delivery in peer:
                question = delivery.decode()
                reply = question.reply(f"{question.message}!", sender="peer")
                await bus.publish("agent.asker.message", reply)

        nursery.start_soon(serve)
        with trio.fail_after(3):
            answer = await client_context(bus).ask("asker", "ping")
        nursery.cancel_scope.cancel()
    assert answer.message == "peer says: ping!", "the response on the inbox answered the ask"
    assert asker.responses == [], "a response that answers an ask never reaches the handler"


async def test_responses_reach_the_handler_unanswered_and_none_is_no_answer(
    nats_server: NatsServer,
) -> None:
    recorder = Recorder(answer=lambda m: None if m.message == "quiet" else f"re: {m.message}")
    spec = node_spec(nats_server.url, [agent("alpha", handler=recorder, max_concurrency=1)])
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe("agent.tester.message") as box,
    ):
        await bus.flush()
        unsolicited = to_alpha(
            "unsolicited", type=MessageType.RESPONSE, metadata={"in_reply_to": "nobody-asked"}
        )
        quiet = to_alpha("quiet")
        marker = to_alpha("marker")
        for message in (unsolicited, quiet, marker):
            await bus.publish("agent.alpha.message", message)
        first = await next_message(box)
        assert (first.in_reply_to, first.message) == (marker.id, "re: marker"), (
            "a response and a None answer send nothing: the marker is answered first"
        )
        assert [m.id for m in recorder.seen] == [unsolicited.id, quiet.id, marker.id], (
            "a response nobody asked for reaches the handler"
        )
        stats = node.agents["alpha"].statistics()
    assert (stats.handled, stats.handler_errors, stats.restarts) == (3, 0, 0)


async def test_the_inbox_reads_on_after_its_own_broadcast(nats_server: NatsServer) -> None:
    recorder = Recorder()
    async with (
        running_node(node_spec(nats_server.url, [agent("alpha", handler=recorder)])),
        open_bus(nats_server.url) as bus,
        bus.subscribe("agent.tester.message") as box,
    ):
        await bus.flush()
        for n in range(3):
            await client_context(bus, "alpha").broadcast(f"own {n}")
        after = await client_context(bus).broadcast("after")
        answer = await next_message(box)
    assert answer.in_reply_to == after.id, "a broadcast after its own ones is still handled"
    assert [m.message for m in recorder.seen] == ["after"], "its own broadcasts are skipped"


# -- _decode and _refuse --------------------------------------------------------------------


async def test_a_payload_that_does_not_decode_is_refused_naming_field_and_reason(
    nats_server: NatsServer,
) -> None:
    cases = [
        (
            b'{"metadata": {"k": "\\ud800"}}',
            "$.metadata.k: string holds a lone surrogate (not valid Unicode)",
        ),
        (b"\xff", "$: not valid UTF-8 JSON (bad UTF-8 byte at 0)"),
    ]
    async with (
        running_node(node_spec(nats_server.url, [agent("alpha")])),
        open_bus(nats_server.url) as bus,
    ):
        for payload, words in cases:
            reply = await bus.request("agent.alpha.message", payload, timeout=2)
            assert json.loads(reply.data) == {
                "error": {"code": "bad_request", "message": f"invalid message: {words}"}
            }, "the refusal names the field and the reason"


async def test_refusals_stop_beyond_the_burst_and_come_back_as_the_bucket_refills(
    nats_server: NatsServer,
) -> None:
    flood = 400  # ERROR_REPLY_BURST is 200, refilled at 100 per second
    spec = node_spec(nats_server.url, [agent("alpha")])
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe("_INBOX.refused.*") as refusals,
        bus.subscribe("_INBOX.later.*") as later,
    ):
        await bus.flush()
        start = trio.current_time()
        for n in range(flood):
            await bus.publish("agent.alpha.message", b"{broken", reply=f"_INBOX.refused.{n}")
        # The inbox reads in order: once this is answered, the flood has been judged,
        # and its refusals went out before the answer.
        with trio.fail_after(5):
            await client_context(bus).ask("alpha", "barrier")
        elapsed = trio.current_time() - start
        await bus.flush()
        # (Our connection has read them: they came before the answer, on it.)
        refused = refusals.statistics().pending
        assert 200 <= refused <= 200 + 100 * elapsed, (refused, elapsed)
        assert refused < flood, "beyond the burst, malformed messages are only counted"
        # Later ones are answered again: the bucket refills over time.
        with trio.fail_after(3):
            probes = 0
            while True:
                await bus.publish("agent.alpha.message", b"{broken", reply=f"_INBOX.later.{probes}")
                probes += 1
                with trio.move_on_after(0.05):
                    refusal = await later.receive()
                    break
        assert json.loads(refusal.data)["error"]["code"] == "bad_request"
        await wait_until(lambda: node.agents["alpha"].statistics().malformed == flood + probes)


# -- _handle: the counters, and where answers go --------------------------------------------


async def test_messages_in_flight_and_handled_move_by_exactly_one(nats_server: NatsServer) -> None:
    gate = Gate()
    spec = node_spec(nats_server.url, [agent("alpha", handler=gate, max_concurrency=3)])
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe("agent.tester.message") as box,
    ):
        await bus.flush()
        alpha = node.agents["alpha"]
        for n in range(3):
            await bus.publish("agent.alpha.message", to_alpha(f"m{n}"))
        await wait_until(lambda: len(gate.seen) == 3)
        assert alpha.statistics().in_flight == 3, "three messages in flight"
        assert alpha.statistics().handled == 0
        for left in (2, 1, 0):
            gate.tickets.send_nowait(None)
            await next_message(box)

            def settled(left: int = left) -> bool:
                return alpha.statistics().in_flight == left

            await wait_until(settled, timeout=2)
        stats = alpha.statistics()
    assert (stats.in_flight, stats.handled) == (0, 3), "each message counted once, and done"


class Replier(EchoHandler):
    """Replies through ``context.reply``: at once to ``early``, to the remembered
    question when it gets ``late``."""

    def __init__(self) -> None:
        super().__init__()
        self.remembered: Message | None = None

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        if message.message == "early":
            await context.reply(message, "early reply")
            return None
        if message.message == "remember":
            self.remembered = message
            return "remembered"
        assert self.remembered is not None
        await context.reply(self.remembered, "late reply")
        return None


async def test_replies_go_to_the_reply_subject_only_while_the_message_is_handled(
    nats_server: NatsServer,
) -> None:
    spec = node_spec(nats_server.url, [agent("alpha", handler=Replier())])
    async with (
        running_node(spec),
        open_bus(nats_server.url) as bus,
        bus.subscribe("agent.tester.message") as box,
    ):
        await bus.flush()
        early = await bus.request("agent.alpha.message", to_alpha("early"), timeout=2)
        assert early.decode().message == "early reply", "a reply goes to the NATS reply subject"
        remembered = await bus.request("agent.alpha.message", to_alpha("remember"), timeout=2)
        assert remembered.decode().message == "remembered"
        # That message is handled: a reply to it now goes to the sender's inbox.
        await bus.publish("agent.alpha.message", to_alpha("late"))
        late = await next_message(box)
    assert late.message == "late reply", "the reply subject is forgotten once handled"


class GatedReplier(Gate):
    """A :class:`Gate` that answers through ``context.reply``, naming the sender."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        self.seen.append(message)
        await self._tickets.receive()
        await context.reply(message, f"for {message.sender}")
        return None


async def test_a_second_message_with_the_same_id_cannot_take_the_first_ones_replies(
    nats_server: NatsServer,
) -> None:
    """Reply routing belongs to the message being handled, not to its id: a message
    sent with an id that is in flight (seen on the wire) neither steals the first
    one's replies nor loses its own when the first one is done."""
    gate = GatedReplier()
    spec = node_spec(nats_server.url, [agent("alpha", handler=gate)])
    first = to_alpha("question")
    thief = to_alpha("question", sender="mallory", id=first.id)
    async with running_node(spec), open_bus(nats_server.url) as bus:
        answers: dict[str, Message] = {}

        async def ask(message: Message) -> None:
            reply = await bus.request("agent.alpha.message", message, timeout=2)
            answers[message.sender] = reply.decode()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, first)
            await wait_until(lambda: len(gate.seen) == 1)
            nursery.start_soon(ask, thief)
            await wait_until(lambda: len(gate.seen) == 2)
            gate.tickets.send_nowait(None)  # the first one in answers first
            await wait_until(lambda: "tester" in answers or "mallory" in answers)
            gate.tickets.send_nowait(None)
    assert answers["tester"].message == "for tester", "the first reply went to the thief"
    assert answers["mallory"].message == "for mallory", "the second message lost its reply"


class Script(EchoHandler):
    """Does what the message says: ``fail <n>`` raises with n characters of text,
    ``surrogate`` answers with a lone surrogate, ``int`` answers 42; else echoes."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        words = message.message.split()
        if words[0] == "fail":
            raise HandlerError(ErrorCode.BAD_REQUEST, "e" * int(words[1]))
        if words[0] == "surrogate":
            return "\ud800"
        if words[0] == "int":
            return 42  # type: ignore[return-value]  # the mistake under test
        return f"re: {message.message}"


async def test_answers_and_errors_to_a_broadcast_carry_the_agent_as_sender(
    nats_server: NatsServer,
) -> None:
    spec = node_spec(nats_server.url, [agent("alpha", handler=Script())])
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe("agent.tester.message") as box,
    ):
        await bus.flush()
        hello = await client_context(bus).broadcast("hello")
        answer = await next_message(box)
        failing = await client_context(bus).broadcast("fail 3")
        error = await next_message(box)
        restarts = node.agents["alpha"].statistics().restarts
    assert (answer.sender, answer.to, answer.in_reply_to) == ("alpha", "tester", hello.id), (
        "an answer to a broadcast comes from the agent"
    )
    assert (error.sender, error.to, error.in_reply_to) == ("alpha", "tester", failing.id), (
        "an error answer to a broadcast comes from the agent"
    )
    assert error.metadata["error"] == {"code": "bad_request", "message": "eee"}
    assert restarts == 0


async def test_a_failure_without_a_reply_subject_is_told_to_the_senders_inbox(
    nats_server: NatsServer,
) -> None:
    spec = node_spec(nats_server.url, [agent("alpha", handler=Script())])
    async with (
        running_node(spec),
        open_bus(nats_server.url) as bus,
        bus.subscribe("agent.tester.message") as box,
    ):
        await bus.flush()
        failing = to_alpha("fail 5")
        await bus.publish("agent.alpha.message", failing)
        error = await next_message(box)
    assert (error.type, error.sender, error.in_reply_to) == (
        MessageType.RESPONSE,
        "alpha",
        failing.id,
    ), "the failure goes to agent.<from>.message"
    assert error.message == "error: eeeee"
    assert error.metadata["error"] == {"code": "bad_request", "message": "eeeee"}


async def test_error_texts_are_cut_to_1000_characters(nats_server: NatsServer) -> None:
    spec = node_spec(nats_server.url, [agent("alpha", handler=Script())])
    async with running_node(spec), open_bus(nats_server.url) as bus:
        for length, expected in [
            (999, "e" * 999),
            (1000, "e" * 1000),
            (1001, "e" * 997 + "..."),
            (5000, "e" * 997 + "..."),
        ]:
            reply = await bus.request("agent.alpha.message", to_alpha(f"fail {length}"), timeout=2)
            error = reply.decode()
            assert error.metadata["error"]["message"] == expected, (
                f"an error text of {length} characters is cut to 1000 (997 and '...') past 1000"
            )
            assert error.message == f"error: {expected}"


async def test_answers_that_are_not_a_sendable_str_fail_that_message_alone(
    nats_server: NatsServer,
) -> None:
    spec = node_spec(nats_server.url, [agent("alpha", handler=Script())])
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        context = client_context(bus)
        with pytest.raises(AskFailed) as unencodable:
            await context.ask("alpha", "surrogate", timeout=2)
        with pytest.raises(AskFailed) as not_str:
            await context.ask("alpha", "int", timeout=2)
        assert (await context.ask("alpha", "fine", timeout=2)).message == "re: fine"
        stats = node.agents["alpha"].statistics()
    assert (unencodable.value.code, unencodable.value.message) == (
        ErrorCode.UNENCODABLE.value,
        "cannot encode as JSON: $.message: string holds a lone surrogate (not valid Unicode)",
    ), "an answer that cannot be encoded is an unencodable error"
    assert (not_str.value.code, not_str.value.message) == (
        ErrorCode.AGENT_ERROR.value,
        "TypeError('on_message returned int, not str or None')",
    ), "an answer that is not a str is an agent_error naming its type"
    # The unencodable answer was handled (it failed to be sent); the int was a handler error.
    assert (stats.handled, stats.handler_errors, stats.restarts) == (2, 1, 0)


# -- a bus that refuses the publish ----------------------------------------------------


async def unwatched(kind: ProgressKind, detail: str, scope: TaskScope) -> None:
    """Progress nobody hears."""


async def test_answers_errors_and_refusals_the_bus_cannot_send_are_logged_never_raised(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The inbox's replies on a bus that has closed under it: each kind is logged at
    INFO, once a window and then summarised, naming the agent or sender and the error."""
    caplog.set_level(logging.INFO, "volta.actors.inbox")
    options = BusOptions(servers=(nats_server.url,), report_interval=0.3)
    async with open_bus(options) as closing:
        context = client_context(closing, "alpha")
        units = Units("alpha", UnitLimits(), unwatched)
        spec = agent("alpha")
        assert isinstance(spec.handler, EchoHandler)
        inbox = Inbox(
            spec,
            spec.handler,
            closing,
            context,
            units,
            asks=PendingAsks(),
            record=InboxRecord(),
            announced=trio.Event(),
        )
    question = to_alpha("hello")
    delivery = Delivery(subject="agent.alpha.message", data=b"{broken", reply="_INBOX.gone.1")
    refusal = ProtocolError("$", "not valid UTF-8 JSON")
    for _ in range(2):  # the second of each kind is held back
        await inbox._answer(question, "_INBOX.gone.2", Answered("re: hello", None))
        await inbox._fail(question, "_INBOX.gone.3", Failed(ErrorCode.AGENT_ERROR, "it broke"))
        await inbox._refuse(delivery, ("tester", question.id), refusal)
    await trio.sleep(0.35)  # the windows end: the next line of each kind brings its summary
    await inbox._answer(question, None, Answered("re: hello", None))
    await inbox._fail(question, None, Failed(ErrorCode.AGENT_ERROR, "it broke"))
    await inbox._refuse(delivery, None, refusal)
    lines = [r.getMessage() for r in caplog.records if r.name == "volta.actors.inbox"]
    closed = "the bus is closed: closed by its owner"
    answered = f"agent alpha could not answer {question.id}: {closed}"
    failed = f"could not report the failure to tester: {closed}"
    refused = f"agent alpha could not refuse a malformed message: {closed}"
    assert lines == [
        answered,
        failed,
        refused,
        "1 more answers that could not be sent on answer in the last 0 s",
        answered,
        "1 more error answers that could not be sent on fail in the last 0 s",
        failed,
        "1 more refusals that could not be sent on refuse in the last 0 s",
        refused,
    ]
