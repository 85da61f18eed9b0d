"""Durable inboxes: direct messages kept in a JetStream stream, each handled once.

Real nats-servers with JetStream (file store in the test's folder), real time, every
wait bounded. The crash tests kill the server, and a ``volta run`` node, with SIGKILL.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from volta.actors import (
    AgentContext,
    AgentFault,
    AskFailed,
    AskTimeout,
    DurableInboxes,
    DurableMode,
    DurableSpec,
    Journal,
    open_client,
)
from volta.actors._durable import KEEP_RECORDS
from volta.bus import (
    Bus,
    JetStream,
    JetStreamUnavailable,
    NatsServer,
    Outgoing,
    StreamPublisher,
    open_bus,
    pull,
)
from volta.node import Node
from volta.protocol import (
    Message,
    MessageType,
    agent_inbox,
    agent_message,
    decode_message,
    encode_message,
)

from ..mesh import Recorder, agent, node_spec, running_node, wait_until
from ..test_cli import start_volta, stop_volta

STREAM = DurableSpec().stream


def query(n: int, to: str = "worker", sender: str = "tester") -> Message:
    return Message(sender=sender, to=to, message=str(n), type=MessageType.QUERY)


async def answers_for(bus: Bus, agent_id: str, count: int, within: float) -> list[Message]:
    """Read ``count`` messages from an agent's durable inbox (made beforehand)."""
    found: list[Message] = []
    async with pull(bus, STREAM, agent_id) as messages:
        with trio.move_on_after(within):
            async for held in messages:
                found.append(decode_message(held.data))
                await held.ack()
                if len(found) >= count:
                    break
    return found


async def open_reader(bus: Bus, agent_id: str, held: int = 20_000) -> None:
    """A durable inbox for a test's own id (as a Volta agent would have)."""
    await JetStream(bus).ensure_consumer(STREAM, DurableSpec().consumer_spec(agent_id, held))


# --- on, off, and what start-up says -------------------------------------------------------


async def test_durable_inboxes_are_on_when_the_server_has_jetstream(
    js_server: NatsServer, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="volta.actors.durable")
    async with running_node(node_spec(js_server.url, [agent("alpha")])) as node:
        assert node.durable is not None
        async with open_bus(js_server.url) as bus:
            state = await JetStream(bus).consumer_state(STREAM, "alpha")
            assert state.ack_pending == 0
    async with running_node(node_spec(nats_server.url, [agent("alpha")])) as node:
        assert node.durable is None
    off = DurableSpec(mode=DurableMode.OFF)
    async with running_node(node_spec(js_server.url, [agent("beta")], durable=off)) as node:
        assert node.durable is None
    said = [r.getMessage() for r in caplog.records]
    assert any("durable inboxes on stream VOLTA_INBOX" in line for line in said)
    assert any("the server has no JetStream" in line for line in said)
    assert any("durable inboxes are off" in line for line in said)


async def test_mode_on_refuses_a_server_without_jetstream(nats_server: NatsServer) -> None:
    spec = node_spec(nats_server.url, [agent("alpha")], durable=DurableSpec(mode=DurableMode.ON))
    with pytest.raises(JetStreamUnavailable, match="mode is 'on'"):
        await Node(spec).run()


# --- nothing lost ------------------------------------------------------------------------


async def test_messages_sent_while_the_agent_is_down_are_handled_when_it_returns(
    js_server: NatsServer,
) -> None:
    recorder = Recorder()
    spec = node_spec(js_server.url, [agent("keeper", handler=recorder)])
    async with running_node(spec):
        pass  # the agent's durable inbox now exists; the agent stops
    async with open_bus(js_server.url) as bus, open_client(bus, client_id="tester") as client:
        await open_reader(bus, "tester")
        for n in range(20):  # stored: the agent has a durable inbox, though it is down
            await client._context.send("keeper", str(n), type=MessageType.QUERY)
        assert recorder.seen == []
        async with running_node(spec):
            answers = await answers_for(bus, "tester", 20, within=10)
    assert sorted(int(m.message) for m in recorder.seen) == list(range(20))
    assert sorted(a.message for a in answers) == sorted(f"re: {n}" for n in range(20))


async def test_an_ask_through_the_stream_is_answered_once_on_its_reply_subject(
    js_server: NatsServer,
) -> None:
    recorder = Recorder()
    spec = node_spec(js_server.url, [agent("alpha", handler=recorder), agent("beta")])
    async with running_node(spec) as node, open_bus(js_server.url) as bus:
        beta = node.agents["beta"]
        context = beta._context
        assert context is not None
        answers = [await context.ask("alpha", f"q{n}") for n in range(50)]
        async with open_client(bus) as client:
            by_client = await client.ask("alpha", "from a client", timeout=5)
        state = await JetStream(bus).consumer_state(STREAM, "alpha")
        statistics = bus.statistics()
    assert [a.message for a in answers] == [f"re: q{n}" for n in range(50)]
    assert by_client.message == "re: from a client"
    assert len(recorder.seen) == 51
    assert state.redelivered == 0
    assert statistics.pub_acks_skipped == 0  # the durable asks read their PubAcks


async def test_a_long_unit_says_it_is_in_progress_and_is_not_delivered_again(
    js_server: NatsServer,
) -> None:
    """ack_wait 1 s, a unit of 3.5 s: without in-progress signals it would come back 3 times."""

    @attrs.define
    class Slow:
        seen: int = 0

        async def on_message(self, message: Message, context: AgentContext) -> str:
            self.seen += 1
            await trio.sleep(3.5)
            return "done"

        async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
            raise NotImplementedError

    slow = Slow()
    spec = node_spec(
        js_server.url, [agent("slow", handler=slow)], durable=DurableSpec(ack_wait=1.0)
    )
    async with running_node(spec), open_bus(js_server.url) as bus, open_client(bus) as client:
        answer = await client.ask("slow", "take your time", timeout=10)
        state = await JetStream(bus).consumer_state(STREAM, "slow")
    assert answer.message == "done"
    assert slow.seen == 1
    assert state.redelivered == 0


async def test_messages_waiting_for_a_busy_agent_are_not_delivered_again(
    js_server: NatsServer,
) -> None:
    """One at a time, 1.2 s each, ack_wait 1 s: the ones waiting for their turn are in
    progress too (or each would come back while it waits); handled in arrival order."""

    @attrs.define
    class OneByOne:
        seen: list[str] = attrs.Factory(list)

        async def on_message(self, message: Message, context: AgentContext) -> str:
            self.seen.append(message.message)
            await trio.sleep(1.2)
            return "ok"

        async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
            raise NotImplementedError

    busy = OneByOne()
    spec = node_spec(
        js_server.url,
        [agent("busy", handler=busy, max_concurrency=1)],
        durable=DurableSpec(ack_wait=1.0),
    )
    async with (
        running_node(spec) as node,
        open_bus(js_server.url) as bus,
        open_client(bus) as client,
    ):
        for n in range(3):
            await client._context.send("busy", str(n))
        await wait_until(lambda: len(busy.seen) == 3, timeout=10)
        await trio.sleep(1.5)
        state = await JetStream(bus).consumer_state(STREAM, "busy")
        handled = node.agents["busy"]._inbox.handled
    assert busy.seen == ["0", "1", "2"]
    assert state.ack_pending == 0
    assert handled is not None
    assert handled.duplicates == 0  # nothing came back while it waited


async def test_a_node_stopped_in_the_middle_of_a_unit_leaves_it_to_another_instance(
    js_server: NatsServer,
) -> None:
    """A replicated agent on two nodes; the one at work stops: the other one answers."""
    started = trio.Event()

    @attrs.define
    class Stuck:
        async def on_message(self, message: Message, context: AgentContext) -> str:
            started.set()
            await trio.sleep_forever()
            raise AssertionError

        async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
            raise NotImplementedError

    first = node_spec(js_server.url, [agent("twin", handler=Stuck(), replicated=True)], name="one")
    second = node_spec(js_server.url, [agent("twin", replicated=True)], name="two")
    async with open_bus(js_server.url) as bus, trio.open_nursery() as nursery:
        stuck = Node(first)
        stop_first = trio.CancelScope()

        async def run_first(task_status: trio.TaskStatus[None]) -> None:
            with stop_first:
                await stuck.run(task_status=task_status)

        await nursery.start(run_first)
        answers: list[Message] = []

        async def ask() -> None:
            async with open_client(bus) as client:
                answers.append(await client.ask("twin", "hello", timeout=15))

        nursery.start_soon(ask)
        with trio.fail_after(5):
            await started.wait()
        async with running_node(second):
            stop_first.cancel()  # the unit is interrupted: not answered, not acked
            with trio.fail_after(10):
                while not answers:
                    await trio.sleep(0.02)
    assert [a.message for a in answers] == ["hello"]  # the echo of the second node


async def test_an_inbox_restarted_on_a_live_connection_gets_the_next_message_at_once(
    js_server: NatsServer,
) -> None:
    """An AgentFault restarts the inbox; its old pull requests must not swallow what
    comes next (it would wait out ack_wait, 30 s)."""

    @attrs.define
    class Faulty:
        async def on_message(self, message: Message, context: AgentContext) -> str:
            if message.message == "crash":
                raise AgentFault("broken on purpose")
            return f"fine: {message.message}"

        async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
            raise NotImplementedError

    spec = node_spec(js_server.url, [agent("fragile", handler=Faulty())])
    async with (
        running_node(spec) as node,
        open_bus(js_server.url) as bus,
        open_client(bus) as client,
    ):
        with pytest.raises(AskFailed, match="broken on purpose"):
            await client.ask("fragile", "crash", timeout=5)
        await wait_until(lambda: node.agents["fragile"].restarts >= 1)
        start = trio.current_time()
        answers = [await client.ask("fragile", str(n), timeout=5) for n in range(5)]
        took = trio.current_time() - start
    assert [a.message for a in answers] == [f"fine: {n}" for n in range(5)]
    assert took < 3


async def test_a_malformed_message_is_refused_once_and_never_comes_back(
    js_server: NatsServer,
) -> None:
    spec = node_spec(js_server.url, [agent("alpha")])
    async with running_node(spec) as node, open_bus(js_server.url) as bus:
        await open_reader(bus, "tester")
        bad = json.dumps({"from": "tester", "id": "m-1", "to": "alpha", "message": 5}).encode()
        await StreamPublisher(bus).publish(agent_inbox("alpha"), bad)
        (refusal,) = await answers_for(bus, "tester", 1, within=5)
        await trio.sleep(0.3)
        state = await JetStream(bus).consumer_state(STREAM, "alpha")
        record = node.agents["alpha"]._inbox
    assert refusal.metadata["error"]["code"] == "bad_request"
    assert refusal.in_reply_to == "m-1"
    assert record.malformed == 1
    assert (state.ack_pending, state.redelivered) == (0, 0)


async def test_a_core_nats_agent_and_a_durable_one_still_talk(js_server: NatsServer) -> None:
    """PROTOCOL.md 11: a foreign agent with a core subscription asks and is asked."""
    spec = node_spec(js_server.url, [agent("alpha")])
    async with (
        running_node(spec) as node,
        open_bus(js_server.url) as foreign,
        foreign.subscribe(agent_message("outsider")) as inbox,
    ):

        async def answer_questions() -> None:
            async for delivery in inbox:
                question = delivery.decode()
                if question.type is MessageType.QUERY:
                    answer = question.reply("outside answer", sender="outsider")
                    where = delivery.reply or agent_message(question.sender)
                    await foreign.publish(where, answer)
                else:
                    responses.append(question)

        responses: list[Message] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_questions)
            context = node.agents["alpha"]._context
            assert context is not None
            asked = await context.ask("outsider", "are you there?")  # core: no durable inbox
            # The outsider asks the way section 11 says: publish, wait on its own inbox.
            await foreign.publish(agent_message("alpha"), query(1, "alpha", "outsider"))
            await wait_until(lambda: bool(responses))
            nursery.cancel_scope.cancel()
    assert asked.message == "outside answer"
    assert responses[0].message == "1"


# --- the crash tests -------------------------------------------------------------------------


async def test_server_killed_mid_stream_every_acked_message_is_handled_once(
    js_server: NatsServer,
) -> None:
    """10,000 durable messages to one agent; ``kill -9`` of the server in the middle."""
    count = 10_000
    recorder = Recorder()
    spec = node_spec(js_server.url, [agent("worker", handler=recorder, max_concurrency=64)])
    async with running_node(spec) as node, open_bus(js_server.url) as bus:
        await open_reader(bus, "tester")
        publisher = StreamPublisher(bus, ack_timeout=0.5, deadline=60)
        sent = 0

        def outgoing() -> Iterator[Outgoing]:
            nonlocal sent
            for n in range(count):
                sent += 1
                message = query(n)
                yield Outgoing(agent_inbox("worker"), encode_message(message), message.id)

        acks: list[object] = []

        async def publish() -> None:
            acks.extend(await publisher.publish_many(outgoing(), window=256))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            while sent < count // 2:  # the publisher and the agent both at work
                await trio.sleep(0.001)
            await js_server.kill()
            await js_server.restart()
        answers = await answers_for(bus, "tester", count, within=60)
        with trio.move_on_after(1):  # anything more is a duplicate
            answers += await answers_for(bus, "tester", 1, within=1)
        handled = node.agents["worker"]._inbox.handled
        assert handled is not None
    handled_ids = [m.id for m in recorder.seen]
    numbers = sorted(int(a.message.removeprefix("re: ")) for a in answers)
    print(
        json.dumps(
            {
                "sent": count,
                "acked": len(acks),
                "handled": len(set(handled_ids)),
                "handler_runs": len(handled_ids),
                "duplicates_suppressed": handled.duplicates,
                "answers": len(answers),
                "publish_retries": publisher.retries,
            }
        )
    )
    assert len(acks) == count
    assert len(handled_ids) == len(set(handled_ids)) == count  # handled exactly once
    assert numbers == list(range(count))  # each answered exactly once


WORKER = """\
class Counter:
    def __init__(self, options):
        self._log = open(options["log"], "a", buffering=1)

    async def on_message(self, message, context):
        self._log.write(message.message + "\\n")
        return "re: " + message.message

    async def on_capability(self, capability, input, context):
        raise NotImplementedError
"""


async def test_node_and_server_killed_mid_stream_every_acked_message_is_answered_once(
    js_server: NatsServer, tmp_path: Path
) -> None:
    """``kill -9`` of the agent's node and of the server, in the middle of 3,000 messages:
    each is answered exactly once; a handler runs again only for what was in flight
    when its node died (it had not been written down as handled)."""
    count = 3000
    (tmp_path / "counter.py").write_text(WORKER)
    log = tmp_path / "handled.log"
    config = tmp_path / "worker.yaml"
    config.write_text(
        f"nats: {{url: '{js_server.url}'}}\n"
        "agents:\n"
        "  - id: worker\n"
        "    max_concurrency: 8\n"
        "    handler: counter:Counter\n"
        f"    options: {{log: '{log}'}}\n"
    )

    def handled() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    node, _ = await start_volta("run", str(config))
    try:
        async with open_bus(js_server.url) as bus:
            await open_reader(bus, "tester")
            publisher = StreamPublisher(bus, ack_timeout=0.5, deadline=60)
            messages = [query(n) for n in range(count)]
            outgoing = [Outgoing(agent_inbox("worker"), encode_message(m), m.id) for m in messages]
            acks: list[object] = []

            async def publish() -> None:
                acks.extend(await publisher.publish_many(outgoing, window=256))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish)
                with trio.fail_after(30):
                    while len(handled()) < count // 3:
                        await trio.sleep(0.005)
                node.kill()  # SIGKILL: units in flight, acks not sent
                await node.wait()
                before_restart = len(handled())
                await js_server.kill()
                await js_server.restart()
                node, _ = await start_volta("run", str(config))
            answers = await answers_for(bus, "tester", count, within=60)
            with trio.move_on_after(1):
                answers += await answers_for(bus, "tester", 1, within=1)
    finally:
        await stop_volta(node, signal.SIGTERM)
    lines = handled()
    numbers = sorted(int(a.message.removeprefix("re: ")) for a in answers)
    print(
        json.dumps(
            {
                "sent": count,
                "acked": len(acks),
                "handled": len(set(lines)),
                "handler_runs": len(lines),
                "handled_before_the_kill": before_restart,
                "answers": len(answers),
                "publish_retries": publisher.retries,
            }
        )
    )
    assert len(acks) == count
    assert sorted(set(lines), key=int) == [str(n) for n in range(count)]
    # Run again: only units in flight or done but not yet written down (max_concurrency 8).
    assert len(lines) - count <= 16
    assert numbers == list(range(count))  # answered exactly once


async def test_a_stream_deleted_under_a_running_node_is_made_again(js_server: NatsServer) -> None:
    """An operator deletes VOLTA_INBOX: the agent's consumer goes with it, its inbox
    restarts, makes the streams again, and asks through the stream work again."""
    spec = node_spec(js_server.url, [agent("alpha")])
    async with running_node(spec) as node, open_bus(js_server.url) as bus:
        await JetStream(bus).delete_stream(STREAM)
        await wait_until(lambda: node.agents["alpha"].restarts >= 1, timeout=10)
        async with open_client(bus) as client:
            with trio.fail_after(10):
                while True:  # (until the consumer is back)
                    try:
                        answer = await client.ask("alpha", "back?", timeout=2)
                        break
                    except AskTimeout:
                        continue
        state = await JetStream(bus).consumer_state(STREAM, "alpha")
        restarts = node.agents["alpha"].restarts
    assert answer.message == "back?"
    assert state.ack_pending == 0
    assert restarts < 5  # made again at once, not a crash loop


def test_the_first_journal_entry_of_a_step_counts() -> None:
    """A later entry for the same step (a forgery, or a retry) never replaces the first."""
    real = {"step": 0, "model": {"content": [{"type": "text", "text": "real"}]}}
    forged = {"step": 0, "model": {"content": [{"type": "text", "text": "forged"}]}}
    tool = {"step": 0, "tool": "t1", "result": {"text": "real", "is_error": False}}
    forged_tool = {"step": 0, "tool": "t1", "result": {"text": "forged", "is_error": False}}
    journal = Journal(None, "S", "agent.a.journal.x", None, [real, tool, forged, forged_tool])  # type: ignore[arg-type]
    assert journal.model_reply(0) == real["model"]
    assert journal.tool_result(0, "t1") == tool["result"]
    assert journal.resumed


async def test_records_of_what_was_handled_are_trimmed_to_the_newest(
    js_server: NatsServer,
) -> None:
    """Records matter for the last seconds' acks only: an agent keeps its newest ones, so
    reading them after a restart stays quick however long it ran."""
    async with open_bus(js_server.url) as bus:
        inboxes = await DurableInboxes.open(bus, DurableSpec())
        assert inboxes is not None
        for n in range(600):
            await inboxes.record_handled(bus, "worker", [(n + 1, 1_000 + n)])
        await inboxes.record_handled(bus, "other", [(1, 1)])
        kept = await inboxes.handled_before(bus, "worker")
        other = await inboxes.handled_before(bus, "other")
    assert len(kept) <= 2 * KEEP_RECORDS
    assert kept[-1] == (600, 1_599)  # the newest are the ones kept
    assert other == [(1, 1)]  # (another agent's records are its own)
