"""A brain's task survives its node: it resumes from its journal, nothing answered is redone.

A real nats-server with JetStream, the real SDK against the fake Messages API. The
coordinator's brain asks a helper twice (two model turns, two tool calls), then its
node stops while its third model call is in flight. The message comes again to the
node started in its place, whose brain takes the first two replies and both answers
from the journal: the model sees only the third call again, the helper is asked
each question once, and the asker gets one answer.
"""

from __future__ import annotations

import threading
from typing import Any

import trio

from volta.actors import open_client
from volta.bus import JetStream, NatsServer, open_bus
from volta.node import Node
from volta.protocol import ProgressEvent, ProgressKind

from ..fake_anthropic import Recorded, Reply, fake_messages_api, text, tool_use
from ..mesh import Recorder, agent, node_spec, running_node, wait_until
from .test_brains import brain_agent


async def test_a_task_resumes_after_its_node_died_without_paying_twice(
    js_server: NatsServer,
) -> None:
    third_call = threading.Event()  # (the fake API's thread waits on it)
    release = threading.Event()

    def script(request: Recorded) -> Reply:
        turns = len(request.messages)  # 1, then 3, then 5: one per model call
        if turns == 1:
            return tool_use(("ask_agent", {"to": "helper", "question": "one"}))
        if turns == 3:
            return tool_use(("ask_agent", {"to": "helper", "question": "two"}))
        if not third_call.is_set():
            third_call.set()
            return Reply(body=text("too late").body, hang=release)  # its node dies first
        # (The recalled answer reaches the model as if the ask had just been made.)
        return text("done" if "answer to two" in request.last_user_text else "lost the answer")

    helper = Recorder(answer=lambda message: f"answer to {message.message}")
    events: list[ProgressEvent] = []
    with fake_messages_api(script) as api:

        def coordinator() -> Any:  # (a node closes its brain's client when it stops)
            return brain_agent("coordinator", api, team=("helper",), task_timeout=30.0)

        first = node_spec(js_server.url, [coordinator()], name="first")
        second = node_spec(js_server.url, [coordinator()], name="second")
        helpers = node_spec(js_server.url, [agent("helper", handler=helper)], name="helpers")
        async with (
            running_node(helpers),
            open_bus(js_server.url) as bus,
            open_client(bus) as client,
            trio.open_nursery() as nursery,
        ):
            answers: list[str] = []

            async def ask() -> None:
                answer = await client.ask(
                    "coordinator", "plan it", timeout=30, on_progress=events.append
                )
                answers.append(answer.message)

            dying = Node(first)
            stop_first = trio.CancelScope()
            first_gone = trio.Event()

            async def run_first(task_status: trio.TaskStatus[None]) -> None:
                try:
                    with stop_first:
                        await dying.run(task_status=task_status)
                finally:
                    first_gone.set()

            await nursery.start(run_first)
            nursery.start_soon(ask)
            await wait_until(third_call.is_set, timeout=10)
            stop_first.cancel()  # its node goes, in the middle of the third model call
            with trio.fail_after(10):
                await first_gone.wait()
            release.set()  # (the reply to the call in flight reaches nobody)
            async with running_node(second):
                await wait_until(lambda: bool(answers), timeout=15)
            journals = await JetStream(bus).stream_state("VOLTA_INBOX_JOURNAL")
    calls: dict[int, int] = {}
    for request in api.of("coordinator"):
        calls[len(request.messages)] = calls.get(len(request.messages), 0) + 1
    assert answers == ["done"]  # one answer, made with the recalled one
    assert calls == {1: 1, 3: 1, 5: 2}  # only the call in flight was made again
    assert sorted(m.message for m in helper.seen) == ["one", "two"]  # each asked once
    assert any(event.kind is ProgressKind.RESUMED for event in events)
    assert journals.messages == 0  # the journal went with its unit
