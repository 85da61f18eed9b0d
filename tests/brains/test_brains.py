"""Claude brains on the bus, driven through the real anthropic SDK against a fake API.

The fake (tests/fake_anthropic.py) speaks the Messages API on loopback and is
scripted per test; the SDK runs with ``_strict_response_validation=True`` so a
malformed fake fails loudly. Real nats-server, real time, every wait bounded.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import attrs
import pytest
import trio

from volta.actors import AgentSpec, AskFailed, CapabilityFailed, open_client
from volta.actors._functions import FunctionCapabilities
from volta.brains import Brain, BrainSpec, ClaudeModel
from volta.bus import NatsServer, open_bus
from volta.protocol import (
    PROGRESS_ALL,
    PROGRESS_CODEC,
    TASK_CODEC,
    ErrorCode,
    Message,
    MessageType,
    ProgressEvent,
    ProgressKind,
    TaskContext,
    TaskRefused,
    agent_status,
)

from ..fake_anthropic import (
    FakeMessagesAPI,
    Recorded,
    Reply,
    error,
    fake_messages_api,
    text,
    tool_use,
)
from ..mesh import agent, node_spec, running_node, wait_until

CANCELLED = ProgressKind.CANCELLED
API_KEY = "sk-ant-test-0123456789abcdef-never-shown"


def brain_agent(
    agent_id: str,
    api: FakeMessagesAPI,
    *,
    team: tuple[str, ...] = (),
    max_retries: int = 0,
    capabilities: tuple[str, ...] = (),
    skills: dict[str, str] | None = None,
    **changes: Any,
) -> AgentSpec:
    brain_changes = {k: changes.pop(k) for k in list(changes) if k in attrs_fields(BrainSpec)}
    model = ClaudeModel(
        api_key=API_KEY, agent_id=agent_id, base_url=api.url, max_retries=max_retries, strict=True
    )
    brain = Brain(
        BrainSpec(system=f"You are {agent_id}.", team=team, skills=skills or {}, **brain_changes),
        model,
    )
    changes.setdefault("task_timeout", 10.0)
    return agent(agent_id, capabilities, handler=brain, **changes)


def attrs_fields(cls: type) -> set[str]:
    return {field.name for field in attrs.fields(cls)}


def team_script(answers: dict[str, Reply]) -> Any:
    """The coordinator asks b and c in one turn, then combines; b and c answer."""

    def script(request: Recorded) -> Reply:
        if request.agent == "a":
            if not request.tool_results:
                return tool_use(
                    ("ask_agent", {"to": "b", "question": "part one"}),
                    ("ask_agent", {"to": "c", "question": "part two"}),
                )
            return text(
                "combined: " + " | ".join(r["content"][0]["text"] for r in request.tool_results)
            )
        return answers[request.agent]

    return script


async def test_a_coordinator_asks_two_agents_at_once_and_combines(nats_server: NatsServer) -> None:
    script = team_script({"b": text("B's part", delay=0.5), "c": text("C's part", delay=0.5)})
    with fake_messages_api(script) as api:
        agents = [
            brain_agent("a", api, team=("b", "c")),
            brain_agent("b", api),
            brain_agent("c", api),
        ]
        async with (
            running_node(node_spec(nats_server.url, agents)),
            open_client(nats_server.url) as client,
        ):
            answer = await client.ask("a", "do the thing", timeout=10)
    assert answer.sender == "a"
    assert "B's part" in answer.message
    assert "C's part" in answer.message
    assert answer.message.startswith("combined: Answer from agent 'b'")
    (b,), (c,) = api.of("b"), api.of("c")
    # Both ran at the same time: the coordinator waited for the slower, not the sum.
    assert b.started < c.ended, "b and c did not overlap"
    assert c.started < b.ended, "b and c did not overlap"
    # What b was asked came as a user turn naming its sender, not in the system prompt.
    assert "part one" in b.last_user_text
    assert "part one" not in str(b.body["system"])
    assert b.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert b.body["tools"][-1]["cache_control"] == {"type": "ephemeral"}


async def test_a_529_then_success_is_retried_by_the_sdk(nats_server: NatsServer) -> None:
    calls = {"n": 0}

    def script(request: Recorded) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            return error(529, "overloaded_error", retry_after_ms="10")
        return text("made it")

    with fake_messages_api(script) as api:
        spec = node_spec(nats_server.url, [brain_agent("a", api, max_retries=2)])
        async with running_node(spec), open_client(nats_server.url) as client:
            answer = await client.ask("a", "try", timeout=10)
    assert answer.message == "made it"
    assert len(api.of("a")) == 2


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (error(529, "overloaded_error", retry_after_ms="1"), "overloaded"),
        (error(429, "rate_limit_error", retry_after_ms="1"), "rate_limited"),
        (error(500, "api_error"), "brain_unavailable"),
        (error(401, "authentication_error"), "brain_unavailable"),
        (error(400, "invalid_request_error", "prompt is too long"), "agent_error"),
    ],
)
async def test_when_the_brain_gives_up_the_sender_gets_a_code(
    nats_server: NatsServer, reply: Reply, code: str
) -> None:
    with fake_messages_api(lambda request: reply) as api:
        spec = node_spec(nats_server.url, [brain_agent("a", api, max_retries=1)])
        async with running_node(spec) as node, open_client(nats_server.url) as client:
            with pytest.raises(AskFailed) as caught:
                await client.ask("a", "try", timeout=10)
            assert node.agents["a"].statistics().restarts == 0
    assert caught.value.code == code
    assert API_KEY not in caught.value.message


async def test_a_model_api_that_is_not_there_is_brain_unavailable(nats_server: NatsServer) -> None:
    with fake_messages_api(lambda request: text("never")) as api:
        url = api.url
    # The server is gone: connection refused.
    gone = FakeMessagesAPI(lambda request: text("never"))
    gone._server = None
    spec_agent = brain_agent("a", api, max_retries=0)
    assert isinstance(spec_agent.handler, Brain)
    model = spec_agent.handler.model
    assert isinstance(model, ClaudeModel)
    model._options["base_url"] = url  # the closed port
    async with (
        running_node(node_spec(nats_server.url, [spec_agent])),
        open_client(nats_server.url) as c,
    ):
        with pytest.raises(AskFailed) as caught:
            await c.ask("a", "anyone?", timeout=10)
    assert caught.value.code == "brain_unavailable"
    assert caught.value.message.startswith("cannot reach the model API")


async def test_a_hanging_api_meets_the_deadline_and_the_agent_goes_on(
    nats_server: NatsServer,
) -> None:
    release = threading.Event()
    hung = {"n": 0}

    def script(request: Recorded) -> Reply:
        if "hang" in request.last_user_text:
            hung["n"] += 1
            return Reply(hang=release, body=text("too late").body)
        return text("quick")

    with fake_messages_api(script) as api:
        spec = node_spec(nats_server.url, [brain_agent("a", api)])
        try:
            async with running_node(spec) as node, open_client(nats_server.url) as client:
                start = trio.current_time()
                with pytest.raises(AskFailed) as caught:
                    await client.ask("a", "please hang", timeout=0.5)
                elapsed = trio.current_time() - start
                # The agent keeps serving, at once.
                answer = await client.ask("a", "and now?", timeout=5)
                assert node.agents["a"].statistics().restarts == 0
        finally:
            release.set()
    assert caught.value.code == "deadline_exceeded"
    assert 0.45 <= elapsed < 1.6
    assert answer.message == "quick"


async def test_malformed_tool_input_becomes_an_error_result_and_the_loop_goes_on(
    nats_server: NatsServer,
) -> None:
    def script(request: Recorded) -> Reply:
        if not request.tool_results:
            return tool_use(
                ("ask_agent", {"to": "b"}),  # no question
                ("ask_agent", {"to": "not an id!", "question": "x"}),
                ("no_such_tool", {}),
                ("list_agents", {"offset": -3}),
            )
        return text(
            "recovered: " + " | ".join(r["content"][0]["text"] for r in request.tool_results)
        )

    with fake_messages_api(script) as api:
        spec = node_spec(nats_server.url, [brain_agent("a", api)])
        async with running_node(spec), open_client(nats_server.url) as client:
            answer = await client.ask("a", "go", timeout=10)
    results = api.of("a")[-1].tool_results
    assert [r.get("is_error") for r in results] == [True] * 4
    texts = [r["content"][0]["text"] for r in results]
    assert texts[0] == "bad_input: 'question' must be a string, got NoneType"
    assert texts[1].startswith("bad_input: invalid agent id 'not an id!'")
    assert texts[2] == "bad_input: there is no tool 'no_such_tool'"
    assert texts[3] == "bad_input: 'offset' must be an integer from 0 to 1000000000"
    assert answer.message.startswith("recovered: bad_input")


async def test_a_asks_b_asks_a_is_refused_by_the_chain_rule(nats_server: NatsServer) -> None:
    def script(request: Recorded) -> Reply:
        other = "b" if request.agent == "a" else "a"
        if not request.tool_results:
            return tool_use(("ask_agent", {"to": other, "question": f"{request.agent} asks"}))
        return text(f"{request.agent} got: " + request.tool_results[0]["content"][0]["text"])

    with fake_messages_api(script) as api:
        agents = [brain_agent("a", api), brain_agent("b", api)]
        async with (
            running_node(node_spec(nats_server.url, agents)),
            open_client(nats_server.url) as c,
        ):
            answer = await c.ask("a", "go", timeout=10)
    # b's model tried to ask a back: the tool refused, b's model was told, no loop.
    b_results = api.of("b")[-1].tool_results
    assert b_results[0]["is_error"] is True
    assert b_results[0]["content"][0]["text"].startswith("loop_detected: 'a' is already working")
    assert len(api.of("a")) == 2  # a thought twice (ask, then answer): never asked again
    assert answer.message.startswith("a got: Answer from agent 'b'")


async def test_a_fan_out_that_would_exceed_the_budget_is_stopped(nats_server: NatsServer) -> None:
    """Every call reports 400 tokens. A has 1,000: after its first call, 600 are left,
    split among 3 delegations (160 each, 80% of 600 / 3): too little for b, c and d."""

    def script(request: Recorded) -> Reply:
        if request.agent == "a" and not request.tool_results:
            return tool_use(
                *[("ask_agent", {"to": n, "question": "your part"}) for n in "bcd"],
                input_tokens=300,
                output_tokens=100,
            )
        return text(f"{request.agent} done", input_tokens=300, output_tokens=100)

    with fake_messages_api(script) as api:
        agents = [brain_agent(n, api) for n in "abcd"]
        async with (
            running_node(node_spec(nats_server.url, agents)),
            open_client(nats_server.url) as c,
        ):
            with pytest.raises(AskFailed) as caught:
                await c.ask("a", "fan out", timeout=10, budget=1000)
    assert [len(api.of(n)) for n in "bcd"] == [0, 0, 0], "a delegate thought over budget"
    # a's second call (to combine the refusals) no longer fits either: the task stops.
    assert caught.value.code == "budget_exceeded"
    assert caught.value.spent <= 1000
    assert len(api.of("a")) == 1  # only its first call was made


async def test_cancelling_the_asker_cancels_the_work_on_b_and_c(nats_server: NatsServer) -> None:
    release = threading.Event()

    def script(request: Recorded) -> Reply:
        if request.agent == "a":
            return tool_use(
                ("ask_agent", {"to": "b", "question": "slow part"}),
                ("ask_agent", {"to": "c", "question": "slow part"}),
            )
        return Reply(hang=release, body=text("late").body)

    events: list[ProgressEvent] = []
    with fake_messages_api(script) as api:
        agents = [brain_agent(n, api, team=("b", "c") if n == "a" else ()) for n in "abc"]
        try:
            async with (
                running_node(node_spec(nats_server.url, agents)) as node,
                open_bus(nats_server.url) as watcher,
                watcher.subscribe(PROGRESS_ALL) as progress,
                open_client(nats_server.url) as client,
            ):
                await watcher.flush()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.ask, "a", "big job")
                    await wait_until(lambda: len(api.of("b")) == 1 and len(api.of("c")) == 1)
                    nursery.cancel_scope.cancel()  # what Ctrl-C in `volta ask` does
                await wait_until(lambda: node.tasks.cancelled == 3 and len(node.tasks) == 0)
                with trio.fail_after(5):
                    while {"a", "b", "c"} - {e.agent for e in events if e.kind is CANCELLED}:
                        events.append(PROGRESS_CODEC.decode((await progress.receive()).data))
        finally:
            release.set()
    # a's unit and both delegates' units were cancelled, by span, on their agents, and
    # each said so in the task's progress.
    assert {e.agent for e in events if e.kind is ProgressKind.CANCELLED} == {"a", "b", "c"}


async def test_memory_stays_within_its_bounds_over_200_turns(nats_server: NatsServer) -> None:
    with fake_messages_api(lambda request: text("ok " + "x" * 200)) as api:
        agent_spec = brain_agent("a", api, history_turns=10, history_tokens=2000)
        brain: Brain = agent_spec.handler  # type: ignore[assignment]
        async with (
            running_node(node_spec(nats_server.url, [agent_spec])),
            open_client(nats_server.url) as client,
        ):
            for n in range(200):
                await client.ask("a", f"turn {n} " + "y" * 300, timeout=10, thread="t1")
            for n in range(50):
                await client.ask("a", f"other thread {n}", timeout=10, thread=f"t{n + 2}")
        thread = brain.memory.history(f"thread:{client.id}:t1")
    sent = [len(r.messages) for r in api.of("a")]
    assert max(sent) <= 11, "the history sent grew past 10 turns (+ the new one)"
    assert brain.memory.stats()["tokens"] <= 2000 * 51
    assert len(thread) <= 10
    assert "turn 199" in str(thread[-2]["content"])  # the newest exchange is kept


async def test_the_key_never_leaves_the_process_but_for_the_api(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with fake_messages_api(
        team_script({"b": error(401, "authentication_error", f"bad key {API_KEY}"), "c": text("c")})
    ) as api:
        agents = [brain_agent("a", api), brain_agent("b", api), brain_agent("c", api)]
        async with (
            running_node(node_spec(nats_server.url, agents, heartbeat_interval=0.1)),
            open_bus(nats_server.url) as bus,
            bus.subscribe(">") as everything,
            open_client(nats_server.url) as client,
        ):
            await bus.flush()
            answer = await client.ask("a", "go", timeout=10)
            await trio.sleep(0.3)  # heartbeats with usage go out
            await bus.flush()
            wire = b""
            while everything.statistics().pending:
                wire += (await everything.receive()).data
    assert API_KEY.encode() not in wire
    assert b'"usage":{"model_calls"' in wire  # the heartbeats were among what we saw
    assert all(API_KEY not in record.getMessage() for record in caplog.records)
    assert API_KEY not in answer.message
    # Only the model API has it (the SDK sends it as x-api-key or as a bearer token).
    assert all(
        API_KEY in r.headers.get("x-api-key", "") + r.headers.get("authorization", "")
        for r in api.requests
    )


async def test_usage_is_in_the_heartbeat(nats_server: NatsServer) -> None:
    with fake_messages_api(
        lambda r: text("hi", input_tokens=7, output_tokens=3, cache_read_input_tokens=5)
    ) as api:
        spec = node_spec(nats_server.url, [brain_agent("a", api, heartbeat_interval=0.1)])
        async with (
            running_node(spec),
            open_bus(nats_server.url) as bus,
            bus.subscribe(agent_status("a")) as beats,
            open_client(nats_server.url) as client,
        ):
            await client.ask("a", "one", timeout=5)
            await client.ask("a", "two", timeout=5)
            with trio.fail_after(5):
                while True:
                    usage = json.loads((await beats.receive()).data).get("usage") or {}
                    if usage.get("model_calls") == 2:
                        break
    assert (usage["input_tokens"], usage["output_tokens"]) == (14, 6)
    assert usage["cache_read_input_tokens"] == 10
    assert usage["latency_ms_total"] > 0


async def test_skills_and_functions_serve_capabilities(nats_server: NatsServer) -> None:
    def script(request: Recorded) -> Reply:
        return text("summary of: " + request.last_user_text.rsplit("\n", 1)[-1])

    def shout(value: object) -> str:
        if not isinstance(value, str):
            raise TypeError(f"shout expects a string, got {type(value).__name__}")
        return value.upper() + "!"

    with fake_messages_api(script) as api:
        base = brain_agent(
            "a", api, capabilities=("summarize", "shout"), skills={"summarize": "Sum up."}
        )
        assert isinstance(base.handler, Brain)
        handler = FunctionCapabilities(base.handler, {"shout": shout})
        spec = node_spec(nats_server.url, [attrs.evolve(base, handler=handler)])
        async with running_node(spec), open_client(nats_server.url) as client:
            summary = await client.capability("summarize", "a long text")
            shouted = await client.capability("shout", "hey")
            with pytest.raises(CapabilityFailed) as caught:
                await client.capability("shout", 42)  # a TypeError inside: bad input
    assert summary == 'summary of: "a long text"'
    assert shouted == "HEY!"
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert caught.value.message == "shout: shout expects a string, got int"
    assert len(api.of("a")) == 1  # the function did not call the model


async def test_tool_results_are_bounded(nats_server: NatsServer) -> None:
    def script(request: Recorded) -> Reply:
        if request.agent == "big":
            return text("z" * 20_000)
        if not request.tool_results:
            return tool_use(
                ("ask_agent", {"to": "big", "question": "everything"}), ("list_agents", {})
            )
        return text("done")

    with fake_messages_api(script) as api:
        agents = [brain_agent("a", api, roster_page=2), brain_agent("big", api)]
        agents += [agent(f"extra{n}") for n in range(3)]
        async with (
            running_node(node_spec(nats_server.url, agents)),
            open_client(nats_server.url) as c,
        ):
            await c.ask("a", "go", timeout=10)
    big, roster = (r["content"][0]["text"] for r in api.of("a")[-1].tool_results)
    assert len(big) < 8200
    assert big.endswith("more characters not shown]")
    page = json.loads(roster)
    assert (page["total"], len(page["agents"]), page["next_offset"]) == (5, 2, 2)
    assert "call list_agents with offset 2" in page["note"]


async def test_a_turn_may_make_so_many_tool_calls_and_no_more(nats_server: NatsServer) -> None:
    def script(request: Recorded) -> Reply:
        if not request.tool_results:
            return tool_use(*[("list_agents", {}) for _ in range(40)])
        return text(f"{len(request.tool_results)} results")

    with fake_messages_api(script) as api:
        spec = node_spec(nats_server.url, [brain_agent("a", api, max_tool_calls=5)])
        async with running_node(spec), open_client(nats_server.url) as client:
            answer = await client.ask("a", "go wild", timeout=10)
    results = api.of("a")[-1].tool_results
    assert answer.message == "40 results"  # every tool_use got its tool_result
    assert [r.get("is_error", False) for r in results] == [False] * 5 + [True] * 35
    assert "too many tool calls in one turn (at most 5)" in results[-1]["content"][0]["text"]


async def test_a_question_with_no_budget_left_is_refused_not_ignored(
    nats_server: NatsServer,
) -> None:
    with fake_messages_api(lambda r: text("never")) as api:
        spec = node_spec(nats_server.url, [brain_agent("a", api)])
        async with running_node(spec), open_bus(nats_server.url) as bus, open_client(bus) as c:
            # The client will not even send it...
            with pytest.raises(TaskRefused, match="budget_exceeded"):
                await c.ask("a", "think for free", timeout=5, budget=0)
            # ...and a peer that does gets an answer that says why, not silence.
            task = TaskContext.root("mallory", budget=0)
            question = Message(
                sender="mallory",
                to="a",
                message="think for free",
                type=MessageType.QUERY,
                metadata={"task": TASK_CODEC.to_dict(task)},
            )
            reply = (await bus.request("agent.a.message", question, timeout=5)).decode()
    assert reply.metadata["error"]["code"] == "budget_exceeded"
    assert api.of("a") == []
