"""Identity: one id, one agent; or several instances when the agent is replicated.

Real nats-servers, real time, every wait bounded.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from volta.actors import AgentContext
from volta.bus import NatsServer, open_bus
from volta.node import IdentityClash, IdentityConflict, Node
from volta.protocol import AGENT_ANNOUNCE, Message, Presence, agent_status

from ..mesh import Recorder, agent, client_context, node_spec, running_node, wait_until


async def test_a_second_node_refuses_an_id_that_is_online(nats_server: NatsServer) -> None:
    first = node_spec(nats_server.url, [agent("alpha")], name="first")
    second = node_spec(nats_server.url, [agent("alpha")], name="second")
    async with running_node(first) as holder:
        with pytest.raises(IdentityConflict) as caught, trio.fail_after(10):
            await Node(second).run()
        # Still alpha, still answering, still the first node's.
        async with open_bus(nats_server.url) as bus:
            answer = await client_context(bus).ask("alpha", "who?")
    (clash,) = caught.value.clashes
    assert clash.agent == "alpha"
    assert f"node {holder.node_id} holds it" in clash.reason
    assert holder.agents["alpha"].instance in clash.reason
    assert str(caught.value).startswith("no agent could start: agent 'alpha' is already taken")
    assert answer.sender == "alpha"


async def test_only_the_clashing_agents_are_refused(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, [agent("alpha")], name="first")),
        running_node(
            node_spec(nats_server.url, [agent("alpha"), agent("delta")], name="second")
        ) as second,
        second.events.watch() as _events,
        open_bus(nats_server.url) as bus,
    ):
        assert sorted(second.agents) == ["delta"]
        assert [c.agent for c in second.refused] == ["alpha"]
        assert (await client_context(bus).ask("delta", "hi")).message == "hi"


async def race_for(url: str, agent_id: str) -> dict[str, str]:
    """Start two nodes with the same agent at the same moment; what became of each."""
    outcomes: dict[str, str] = {}
    async with trio.open_nursery() as nursery:

        async def start(name: str) -> None:
            node = Node(node_spec(url, [agent(agent_id)], name=name))
            try:
                with trio.fail_after(10):
                    await nursery.start(node.run)
            except IdentityConflict:
                outcomes[name] = "refused"
                return
            outcomes[name] = "kept"

        nursery.start_soon(start, "left")
        nursery.start_soon(start, "right")
        await wait_until(lambda: len(outcomes) == 2)
        nursery.cancel_scope.cancel()
    return outcomes


async def test_simultaneous_starts_leave_exactly_one_owner(nats_server: NatsServer) -> None:
    for attempt in range(5):
        outcomes = await race_for(nats_server.url, f"contested-{attempt}")
        assert sorted(outcomes.values()) == ["kept", "refused"], (attempt, outcomes)


async def test_a_restarted_node_takes_its_ids_back_at_once(nats_server: NatsServer) -> None:
    """A node that died without a word does not answer claims: its successor starts."""
    spec = node_spec(nats_server.url, [agent("alpha")], name="container")
    async with running_node(spec) as first:
        first_instance = first.agents["alpha"].instance
    # (Stopped in order here; the claim protocol does not care how it went.)
    async with running_node(spec) as second:
        assert second.agents["alpha"].instance != first_instance


class Tagged(Recorder):
    """Answers with the name of the node it runs on."""

    def __init__(self, tag: str) -> None:
        super().__init__(answer=lambda message: f"{tag}: {message.message}")


async def test_a_replicated_agent_shares_its_work_and_survives_an_instance(
    nats_server: NatsServer,
) -> None:
    def worker(tag: str) -> Any:
        return agent("worker", ["echo"], handler=Tagged(tag), replicated=True)

    async with open_bus(nats_server.url) as bus:
        context = client_context(bus)
        async with running_node(node_spec(nats_server.url, [worker("one")], name="one")):
            async with running_node(node_spec(nats_server.url, [worker("two")], name="two")) as two:
                await wait_until(lambda: len(instances(two, "worker")) == 2)
                answers = [(await context.ask("worker", f"q{n}")).message for n in range(40)]
                listed = {a.id: a for a in await context.list_agents()}
            # "two" stopped in order: only its own instance went offline.
            after = {a.id: a for a in await context.list_agents()}
            # Every message after the stop reaches the instance that is left.
            later = [(await context.ask("worker", f"r{n}")).message for n in range(20)]
    tags = {answer.split(":")[0] for answer in answers}
    assert tags == {"one", "two"}, "the two instances did not share the work"
    assert listed["worker"].replicated is True
    assert len(listed["worker"].instances) == 2
    assert {(i.node or "").split("@")[0] for i in listed["worker"].instances} == {"one", "two"}
    assert after["worker"].status is Presence.ONLINE
    assert len(after["worker"].instances) == 1
    assert {answer.split(":")[0] for answer in later} == {"one"}


def instances(node: Node, agent_id: str) -> tuple[Any, ...]:
    info = node.directory.get(agent_id)
    return info.instances if info is not None else ()


async def test_replicated_and_single_instances_do_not_mix(nats_server: NatsServer) -> None:
    replicated = node_spec(nats_server.url, [agent("mixed", replicated=True)], name="rep")
    single = node_spec(nats_server.url, [agent("mixed")], name="single")
    async with running_node(replicated) as holder:
        with pytest.raises(IdentityConflict) as caught, trio.fail_after(10):
            await Node(single).run()
    assert f"node {holder.node_id} holds it" in str(caught.value)
    assert ", replicated)" in str(caught.value)


async def test_a_forged_announce_cannot_take_over_an_id(nats_server: NatsServer) -> None:
    spec = node_spec(nats_server.url, [agent("beta", ["word_count"])])
    async with (
        running_node(spec) as node,
        node.events.watch(1000) as events,
        open_bus(nats_server.url) as bus,
    ):
        forged = {"id": "beta", "name": "Mallory", "capabilities": ["steal"], "instance": "evil"}
        await bus.publish(AGENT_ANNOUNCE, json.dumps(forged).encode())
        # Without an instance id, as a peer outside Volta would send it.
        await bus.publish(AGENT_ANNOUNCE, json.dumps({"id": "beta", "name": "M2"}).encode())
        clashes: list[IdentityClash] = []
        with trio.fail_after(5):
            async for event in events:
                if isinstance(event, IdentityClash):
                    clashes.append(event)
                    if len(clashes) == 2:
                        break
        info = node.directory.get("beta")
    assert info is not None
    assert (info.name, info.capabilities) == ("beta", ("word_count",))
    assert node.directory.providers("steal") == []
    assert [c.instance for c in clashes] == ["evil", None]
    assert "is already online as instance" in clashes[0].reason
    assert node.directory.clashes == 2


async def test_a_stopped_duplicate_cannot_say_the_real_agent_offline(
    nats_server: NatsServer,
) -> None:
    async with (
        running_node(node_spec(nats_server.url, [agent("alpha")])) as node,
        open_bus(nats_server.url) as bus,
    ):
        goodbye = {"id": "alpha", "status": "offline", "instance": "someone-else"}
        await bus.publish(agent_status("alpha"), json.dumps(goodbye).encode())
        # A marker on the same subscription (agent.*.status), after the forgery.
        marker = {"id": "marker", "heartbeat_interval": 30}
        await bus.publish(agent_status("marker"), json.dumps(marker).encode())
        await wait_until(lambda: node.directory.get("marker") is not None)
        info = node.directory.get("alpha")
        assert info is not None
        assert info.status is Presence.ONLINE
        assert (await client_context(bus).ask("alpha", "there?")).message == "there?"


async def test_an_ask_reply_reaches_the_instance_that_asked(nats_server: NatsServer) -> None:
    """Two instances of a replicated asker: each gets the answer to its own question."""

    class Asker(Recorder):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        async def on_message(self, message: Message, context: AgentContext) -> str | None:
            answer = await context.ask("oracle", f"{self.tag}:{message.message}")
            return f"{self.tag} got {answer.message}"

    oracle = agent("oracle", handler=Recorder(answer=lambda m: f"re {m.message}"))
    one = node_spec(
        nats_server.url,
        [agent("asker", handler=Asker("one"), replicated=True), oracle],
        name="one",
    )
    two = node_spec(
        nats_server.url, [agent("asker", handler=Asker("two"), replicated=True)], name="two"
    )
    async with (
        running_node(one),
        running_node(two),
        open_bus(nats_server.url) as bus,
    ):
        context = client_context(bus)
        answers = [(await context.ask("asker", f"q{n}", timeout=5)).message for n in range(30)]
    for answer in answers:
        tag, _, rest = answer.partition(" got re ")
        assert rest.startswith(f"{tag}:"), answer  # the answer came back to its own asker
    assert {answer.split(" ")[0] for answer in answers} == {"one", "two"}
