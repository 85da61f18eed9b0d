"""Agents on a real nats-server: messaging, discovery, capabilities, failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from volta.actors import AgentContext, AgentFault, AskFailed, AskTimeout, CapabilityFailed
from volta.actors._calls import PendingAsks
from volta.bus import NatsServer, NatsServerConfig, open_bus, run_nats_server
from volta.core import open_nursery
from volta.node import ConnectionMode
from volta.protocol import (
    AGENT_ANNOUNCE,
    CAPABILITY_REQUEST,
    ErrorCode,
    InvalidSubject,
    Message,
    MessageType,
    Presence,
    agent_status,
)
from volta.supervisor import EventKind, SupervisorEvent

from ..mesh import (
    Recorder,
    agent,
    client_context,
    node_spec,
    running_node,
    seed_agents,
    wait_until,
)


async def test_three_agents_are_listed_online(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())),
        open_bus(nats_server.url) as bus,
    ):
        agents = await client_context(bus).list_agents()
    assert [(a.id, a.status, a.capabilities) for a in agents] == [
        ("alpha", Presence.ONLINE, ("echo", "uppercase")),
        ("beta", Presence.ONLINE, ("word_count",)),
        ("gamma", Presence.ONLINE, ("word_count", "sum")),
    ]


async def test_list_agents_gets_exactly_one_reply_with_two_nodes(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, [agent("alpha")], name="one")),
        running_node(node_spec(nats_server.url, [agent("beta")], name="two")) as second,
        open_bus(nats_server.url) as bus,
        bus.subscribe("_INBOX.listing.*") as replies,
    ):
        await wait_until(lambda: len(second.directory) == 2)
        await bus.publish("mcp.list_agents", b"{}", reply="_INBOX.listing.1")
        with trio.fail_after(5):
            first = await replies.receive()
        # Markers: each directory answers its requests in order, so once both have
        # answered a later request, a second reply to the first would be here.
        with trio.fail_after(5):
            for n in range(2, 40):
                await bus.publish("mcp.list_agents", b"{}", reply=f"_INBOX.listing.{n}")
            for _ in range(2, 40):
                marker = await replies.receive()
                assert marker.subject != "_INBOX.listing.1", "a second reply to one request"
        await bus.flush()
        assert replies.statistics().pending == 0
    assert first.subject == "_INBOX.listing.1"
    ids = [entry["id"] for entry in json.loads(first.data)["agents"]]
    assert ids == ["alpha", "beta"]


async def test_ask_gets_the_matching_response(nats_server: NatsServer) -> None:
    recorder = Recorder(answer=lambda m: m.message.upper())
    async with running_node(node_spec(nats_server.url, [agent("alpha", handler=recorder)])):
        async with (
            open_bus(nats_server.url) as bus,
            bus.subscribe_messages("agent.tester.message") as inbox,
        ):
            context = client_context(bus)
            # A stray response to nobody's question must not confuse ask().
            await bus.publish(
                "agent.tester.message",
                Message(
                    sender="alpha",
                    to="tester",
                    message="stray",
                    type=MessageType.RESPONSE,
                    metadata={"in_reply_to": "nobody"},
                ),
            )
            async with trio.open_nursery() as nursery:

                async def route_responses() -> None:
                    async for message in inbox:
                        context._asks.resolve(message)

                nursery.start_soon(route_responses)
                answer = await context.ask("alpha", "hello", timeout=5)
                nursery.cancel_scope.cancel()
    assert answer.message == "HELLO"
    assert answer.type is MessageType.RESPONSE
    assert answer.sender == "alpha"
    assert recorder.seen[0].type is MessageType.QUERY


async def test_agents_message_each_other(nats_server: NatsServer) -> None:
    class Asker(Recorder):
        async def on_message(self, message: Message, context: AgentContext) -> str | None:
            if message.message == "go":
                reply = await context.ask("beta", "ping")
                return f"beta said {reply.message}"
            return await super().on_message(message, context)

    agents = [
        agent("alpha", handler=Asker()),
        agent("beta", handler=Recorder(answer=lambda m: "pong")),
    ]
    async with (
        running_node(node_spec(nats_server.url, agents)),
        open_bus(nats_server.url) as bus,
    ):
        context = AgentContext("tester", "tester", (), bus, PendingAsks(), 5.0)
        async with bus.subscribe_messages("agent.tester.message") as inbox:
            await bus.flush()
            await context.send("alpha", "go")
            with trio.fail_after(5):
                reply = await anext(inbox)
    assert reply.message == "beta said pong"
    assert reply.in_reply_to is not None


async def test_broadcast_reaches_everyone_but_the_sender(nats_server: NatsServer) -> None:
    recorders = {name: Recorder(answer=lambda m: None) for name in ("alpha", "beta", "gamma")}
    agents = [agent(name, handler=recorder) for name, recorder in recorders.items()]
    async with running_node(node_spec(nats_server.url, agents)), open_bus(nats_server.url) as bus:
        # Sent as alpha from outside: alpha's inbox must skip its own broadcast.
        await client_context(bus, "alpha").broadcast("hello all")
        # A marker broadcast after it, on the same subscriptions: once alpha has it,
        # it has judged the first.
        await client_context(bus, "tester").broadcast("marker")
        await wait_until(
            lambda: all(len(r.seen) == 2 for n, r in recorders.items() if n != "alpha")
        )
        await wait_until(lambda: len(recorders["alpha"].seen) == 1)
    assert [m.message for m in recorders["beta"].seen] == ["hello all", "marker"]
    assert [m.message for m in recorders["alpha"].seen] == ["marker"]


async def test_capabilities_route_and_spread_load(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())),
        open_bus(nats_server.url) as bus,
    ):
        context = client_context(bus)
        assert await context.request_capability("uppercase", "abc") == "ABC"
        assert await context.request_capability("sum", [1, 2, 3.5]) == 6.5
        served_by: dict[str, int] = {}
        for _ in range(60):
            reply = await bus.request(
                CAPABILITY_REQUEST,
                json.dumps({"capability": "word_count", "input": "a b c"}).encode(),
                timeout=5,
            )
            answer = json.loads(reply.data)
            assert answer["ok"] is True
            assert answer["result"] == 3
            served_by[answer["agent"]] = served_by.get(answer["agent"], 0) + 1
    assert set(served_by) == {"beta", "gamma"}
    assert min(served_by.values()) >= 10


async def test_unknown_capability_fails_at_once(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())) as node,
        open_bus(nats_server.url) as bus,
    ):
        # Once the node's roll call is over (before, it waits for late announcements).
        await wait_until(lambda: not node.directory.settling(trio.current_time()))
        start = trio.current_time()
        with pytest.raises(CapabilityFailed, match="no_capability") as caught:
            await client_context(bus).request_capability("fly", None, timeout=30)
        assert trio.current_time() - start < 1
    assert caught.value.code is ErrorCode.NO_CAPABILITY


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not valid UTF-8 JSON"),
        (b'{"input": 1}', "capability: required field is missing"),
        (b'{"capability": "a.b"}', "invalid capability name"),
        (b'{"capability": "sum", "timeout": -1}', "timeout"),
    ],
)
async def test_malformed_capability_requests_get_bad_request(
    nats_server: NatsServer, payload: bytes, reason: str
) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())),
        open_bus(nats_server.url) as bus,
    ):
        reply = json.loads((await bus.request(CAPABILITY_REQUEST, payload, timeout=5)).data)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "bad_request"
    assert reason in reply["error"]["message"]


async def test_an_agent_serves_only_the_capability_of_the_endpoint(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())),
        open_bus(nats_server.url) as bus,
    ):
        # beta serves word_count, not uppercase: asking its endpoint for uppercase fails.
        payload = json.dumps({"capability": "uppercase", "input": "abc"}).encode()
        reply = json.loads(
            (await bus.request("capability.invoke.word_count", payload, timeout=5)).data
        )
    assert reply["ok"] is False
    assert reply["error"]["code"] == "bad_request"


async def test_broadcast_is_not_an_agent(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        with pytest.raises(InvalidSubject, match="reserved"):
            await client_context(bus).send("broadcast", "hi")


async def test_capability_input_errors_name_the_agent(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())),
        open_bus(nats_server.url) as bus,
    ):
        with pytest.raises(CapabilityFailed, match="bad_request") as caught:
            await client_context(bus).request_capability("sum", "not a list")
    assert caught.value.agent == "gamma"


class Hangs(Recorder):
    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        await trio.sleep_forever()


async def test_a_hanging_agent_times_out_and_the_caller_carries_on(
    nats_server: NatsServer,
) -> None:
    agents = [
        agent("stuck", ["slow"], handler=Hangs(), capability_timeout=0.3),
        agent("fine", ["echo"]),
    ]
    async with running_node(node_spec(nats_server.url, agents)), open_bus(nats_server.url) as bus:
        context = client_context(bus)
        with pytest.raises(AskTimeout, match=r"agent 'stuck' did not respond within 0\.3 s"):
            await context.ask("stuck", "hello?", timeout=0.3)
        with pytest.raises(CapabilityFailed, match="timeout") as caught:
            await context.request_capability("slow", 1, timeout=5)
        assert caught.value.code is ErrorCode.TIMEOUT
        assert caught.value.agent == "stuck"
        # The caller is fine and so is everyone else.
        assert await context.request_capability("echo", "still here") == "still here"


async def test_router_timeout_when_the_agent_outlasts_the_caller(nats_server: NatsServer) -> None:
    agents = [agent("stuck", ["slow"], handler=Hangs(), capability_timeout=30)]
    async with running_node(node_spec(nats_server.url, agents)), open_bus(nats_server.url) as bus:
        with pytest.raises(CapabilityFailed, match="timeout"):
            await client_context(bus).request_capability("slow", 1, timeout=0.3)


class Fails(Recorder):
    """``fail``: an ordinary handler error. ``crash``: an AgentFault (the agent is broken)."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        if message.message == "fail":
            raise RuntimeError("boom")
        if message.message == "crash":
            raise AgentFault("state corrupted")
        if message.message.startswith("slow"):
            await trio.sleep(float(message.message.split()[1]))
        return await super().on_message(message, context)

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        if input == "crash":
            raise AgentFault("state corrupted")
        raise ValueError(f"cannot {capability}")


async def test_a_failing_handler_fails_that_message_alone(nats_server: NatsServer) -> None:
    async with (
        running_node(
            node_spec(nats_server.url, [agent("flaky", ["work"], handler=Fails())])
        ) as node,
        open_bus(nats_server.url) as bus,
        node.events.watch(1000) as stream,
    ):
        context = client_context(bus)
        with pytest.raises(CapabilityFailed) as capability_failure:
            await context.request_capability("work", 1)
        async with open_nursery() as nursery:
            slow: list[Message] = []

            async def ask_slowly() -> None:
                slow.append(await context.ask("flaky", "slow 0.3"))

            nursery.start_soon(ask_slowly)
            await wait_until(lambda: node.agents["flaky"].statistics().in_flight == 1)
            with pytest.raises(AskFailed) as ask_failure:
                await context.ask("flaky", "fail")
        # The message in flight beside the failure was answered normally.
        assert [m.message for m in slow] == ["re: slow 0.3"]
        assert (await context.ask("flaky", "fine")).message == "re: fine"
        restarts = [
            e
            for e in drain(stream)
            if isinstance(e, SupervisorEvent) and e.kind is EventKind.RESTART
        ]
    assert (capability_failure.value.code, capability_failure.value.message) == (
        ErrorCode.AGENT_ERROR,
        "ValueError('cannot work')",
    )
    assert capability_failure.value.agent == "flaky"
    assert (ask_failure.value.code, ask_failure.value.message) == (
        "agent_error",
        "RuntimeError('boom')",
    )
    assert restarts == []
    stats = node.agents["flaky"].statistics()
    assert (stats.handler_errors, stats.restarts) == (2, 0)


async def test_an_agent_fault_answers_then_restarts_the_child(nats_server: NatsServer) -> None:
    events: list[SupervisorEvent] = []
    async with (
        running_node(
            node_spec(nats_server.url, [agent("flaky", ["work"], handler=Fails())])
        ) as node,
        open_bus(nats_server.url) as bus,
        node.events.watch(1000) as stream,
    ):
        context = client_context(bus)
        with pytest.raises(CapabilityFailed, match=r"agent_error: AgentFault\('state corrupted'\)"):
            await context.request_capability("work", "crash")
        async with open_nursery() as nursery:
            interrupted: list[AskFailed] = []

            async def ask_slowly() -> None:
                with pytest.raises(AskFailed) as caught:
                    await context.ask("flaky", "slow 5")
                interrupted.append(caught.value)

            nursery.start_soon(ask_slowly)
            await wait_until(lambda: node.agents["flaky"].statistics().in_flight == 1)
            with pytest.raises(AskFailed, match=r"AgentFault\('state corrupted'\)"):
                await context.ask("flaky", "crash")

        def started_again() -> set[str]:
            """The children started after their restart (ready: subscribed and flushed)."""
            restarted = {e.child for e in events if e.kind is EventKind.RESTART}
            return {
                e.child
                for i, e in enumerate(events)
                if e.kind is EventKind.START
                and any(r.kind is EventKind.RESTART and r.child == e.child for r in events[:i])
            } & restarted

        with trio.fail_after(5):
            while started_again() != {"capabilities", "inbox"}:
                event = await stream.receive()
                if isinstance(event, SupervisorEvent):
                    events.append(event)
        assert (await context.ask("flaky", "fine")).message == "re: fine"
    restarted = sorted(e.child for e in events if e.kind is EventKind.RESTART)
    assert restarted == ["capabilities", "inbox"]
    # The message in flight when the inbox crashed was told so, not left to time out.
    assert [(e.code, e.message) for e in interrupted] == [
        ("agent_error", "interrupted: the inbox stopped")
    ]
    assert node.agents["flaky"].statistics().handler_errors == 2


def drain(stream: trio.MemoryReceiveChannel[Any]) -> list[Any]:
    """Every event already waiting in a watcher's channel."""
    events = []
    while True:
        try:
            events.append(stream.receive_nowait())
        except trio.WouldBlock:
            return events


async def _ask_with_inbox(bus: Any, context: AgentContext, to: str, text: str) -> Message:
    async with bus.subscribe_messages(f"agent.{context.agent_id}.message") as inbox:
        await bus.flush()
        async with open_nursery() as nursery:

            async def route() -> None:
                async for message in inbox:
                    context._asks.resolve(message)

            nursery.start_soon(route)
            try:
                return await context.ask(to, text, timeout=5)
            finally:
                nursery.cancel_scope.cancel()


async def test_orderly_shutdown_says_offline(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus, bus.subscribe(agent_status("alpha")) as beats:
        await bus.flush()
        async with running_node(node_spec(nats_server.url, [agent("alpha")])):
            with trio.fail_after(5):
                first = json.loads((await beats.receive()).data)
        with trio.fail_after(5):
            statuses: list[str] = []
            while not statuses or statuses[-1] != "offline":
                statuses.append(json.loads((await beats.receive()).data)["status"])
    assert first["status"] == "online"
    assert first["heartbeat_interval"] == 0.2
    assert statuses[-1] == "offline"


async def test_announce_on_start(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus, bus.subscribe(AGENT_ANNOUNCE) as announces:
        await bus.flush()
        async with running_node(node_spec(nats_server.url, seed_agents())):
            with trio.fail_after(5):
                ids = sorted([json.loads((await announces.receive()).data)["id"] for _ in range(3)])
    assert ids == ["alpha", "beta", "gamma"]


@pytest.mark.parametrize("shared", [True, False])
async def test_shared_and_own_connections(nats_server: NatsServer, shared: bool) -> None:
    connection = ConnectionMode.SHARED if shared else ConnectionMode.PER_AGENT
    spec = node_spec(nats_server.url, seed_agents(), connection=connection)
    async with running_node(spec), open_bus(nats_server.url) as bus:
        context = client_context(bus)
        assert await context.request_capability("word_count", "one two") == 2
        assert len(await context.list_agents()) == 3


async def test_intensity_breach_escalates_to_the_node_which_restarts_the_agent(
    nats_server: NatsServer,
) -> None:
    from volta.actors import SupervisionPolicy

    strict = SupervisionPolicy(max_restarts=1, period=30)
    spec = node_spec(nats_server.url, [agent("fragile", handler=Fails(), supervision=strict)])
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        context = client_context(bus)
        kinds: list[tuple[EventKind, str | None]] = []

        async def until(wanted: tuple[EventKind, str], times: int = 1) -> None:
            with trio.fail_after(5):
                while kinds.count(wanted) < times:
                    event = await stream.receive()
                    if isinstance(event, SupervisorEvent):
                        kinds.append((event.kind, event.child))

        async with node.events.watch(1000) as stream:
            with pytest.raises(AskFailed, match="AgentFault"):
                await context.ask("fragile", "crash")
            # Wait for the restarted inbox: a message sent while it restarts may be lost.
            await until((EventKind.START, "inbox"))
            with pytest.raises(AskFailed, match="AgentFault"):
                await context.ask("fragile", "crash")
            await until((EventKind.RESTART, "agent-fragile"))
            # ... and for the inbox of the agent the node started again.
            await until((EventKind.START, "inbox"), times=2)
        assert (EventKind.ESCALATION, "inbox") in kinds
        # Restarted by the node, the agent serves again.
        reply = await context.ask("fragile", "hello")
    assert reply.message == "re: hello"


async def test_listings_larger_than_max_payload_come_in_pages(tmp_path: Path) -> None:
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 4096\n")
    async with run_nats_server(NatsServerConfig(extra_args=("-c", str(config)))) as server:
        agents = [agent(f"agent-{n:03d}", ["work"], name="n" * 200) for n in range(60)]
        async with running_node(node_spec(server.url, agents)) as node, open_bus(server.url) as bus:
            assert bus.max_payload == 4096
            await wait_until(lambda: len(node.directory) == 60)
            context = client_context(bus)
            listed = await context.list_agents()
            assert [a.id for a in listed] == [f"agent-{n:03d}" for n in range(60)]
            assert len(await context.list_agents(capability="work")) == 60
            assert await context.list_agents(capability="other") == ()
            # A bad query is refused with a reason, and the directory stays up.
            reply = await bus.request("mcp.list_agents", b'{"limit": 0}', timeout=5)
            assert json.loads(reply.data)["error"]["code"] == "bad_request"
            assert node.supervisor is not None
            assert node.supervisor.statistics().restarts == 0
