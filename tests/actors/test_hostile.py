"""Nothing a client sends can take an agent down: the bad-input matrix, live.

For each subject a Volta node listens on, a hostile client (plain bytes on its
own connection) sends every kind of bad payload. After each one the node must
be intact: no child restarted, the agent's heartbeats go on, a valid message is
answered; where someone waits for a reply (a reply subject), they get exactly
one, ``bad_request``, at once. The poison is then repeated beyond the restart
intensity: nothing escalates.

Rules: a real nats-server per test, real time, every wait under ``fail_after``.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from volta.actors import AgentContext, AskFailed, CapabilityFailed, EchoHandler, SupervisionPolicy
from volta.bus import (
    Bus,
    ConnectionEvent,
    ConnectionEventKind,
    NatsServer,
    Subscription,
    SubscriptionStatistics,
    open_bus,
)
from volta.node import Node
from volta.protocol import (
    AGENT_ANNOUNCE,
    AGENT_BROADCAST,
    AGENT_CLAIM,
    CAPABILITY_REQUEST,
    MCP_LIST_AGENTS,
    ErrorCode,
    Message,
    Presence,
    ProtocolError,
    agent_status,
    decode_json,
    encode_message,
)
from volta.supervisor import Intensity

from ..mesh import agent, client_context, node_spec, running_node

NOW = "2026-11-25T18:00:00Z"


def message(**changes: Any) -> bytes:
    """A message to alpha from 'mallory', with fields changed (None removes one)."""
    document: dict[str, Any] = {
        "id": "m-1",
        "from": "mallory",
        "to": "alpha",
        "message": "hi",
        "type": "query",
        "metadata": {},
        "timestamp": NOW,
    }
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return json.dumps(document).encode()


def splice(valid: bytes, field: str, raw: bytes) -> bytes:
    """``valid`` with the value of ``field`` replaced by raw JSON text."""
    document = json.loads(valid)
    document[field] = "@@"
    return json.dumps(document).encode().replace(b'"@@"', raw)


DEEP = b"[" * 1100 + b"]" * 1100
HUGE_INT = b"9" * 5000
SURROGATE = b'"\\ud800"'

# Payloads no decoder may choke on, whatever the subject.
GENERIC: list[tuple[str, bytes]] = [
    ("not JSON", b"{broken"),
    ("empty", b""),
    ("JSON but not an object", b"[1, 2, 3]"),
    ("a JSON string", b'"hello"'),
    ("invalid UTF-8", b'{"id": "\xff\xfe"}'),
    ("a lone surrogate", b'{"id": ' + SURROGATE + b"}"),
    ("deep nesting", DEEP),
    ("a huge integer", HUGE_INT),
    ("NaN", b'{"id": NaN}'),
    ("Infinity", b'{"timeout": Infinity}'),
    ("1e400", b'{"uptime": 1e400}'),
]

MESSAGES: list[tuple[str, bytes]] = [
    *GENERIC,
    ("missing message", message(message=None)),
    ("mistyped message", message(message=42)),
    ("unknown type", message(type="shout")),
    ("mistyped metadata", message(metadata=[1])),
    ("a surrogate in the text", splice(message(), "message", SURROGATE)),
    ("a surrogate in an id", splice(message(), "id", SURROGATE)),
    ("deep metadata", splice(message(), "metadata", b'{"a":' * 100 + b"1" + b"}" * 100)),
    ("a huge integer in metadata", splice(message(), "metadata", b'{"n": ' + HUGE_INT + b"}")),
    ("a timestamp before year 1 in UTC", message(timestamp="0001-01-01T00:00:00+23:59")),
    ("a timestamp without offset", message(timestamp="2026-11-25T18:00:00")),
    ("a 'from' that is not an id", message(**{"from": "a.b.>"})),
    ("from 'broadcast'", message(**{"from": "broadcast"})),
    ("an unknown target", message(to="nobody-here")),
    ("a response nobody waits for", message(type="response", metadata={"in_reply_to": "zz"})),
]

STATUSES: list[tuple[str, bytes]] = [
    *GENERIC,
    ("a name with a lone surrogate", b'{"id": "mallory", "name": ' + SURROGATE + b"}"),
    ("a 5,000-character name", json.dumps({"id": "mallory", "name": "n" * 5000}).encode()),
    ("capabilities not a list", b'{"id": "mallory", "capabilities": "echo"}'),
    ("a capability that is not a name", b'{"id": "mallory", "capabilities": ["a b"]}'),
    ("1,000 capabilities", json.dumps({"id": "m", "capabilities": ["c"] * 1000}).encode()),
    ("a negative uptime", b'{"id": "mallory", "uptime": -1}'),
    ("in_flight 1e300", b'{"id": "mallory", "in_flight": 1e300}'),
    ("a bad instance", b'{"id": "mallory", "instance": "a.b"}'),
    ("replicated not a bool", b'{"id": "mallory", "replicated": "yes"}'),
    ("the reserved id", b'{"id": "broadcast"}'),
]

REQUESTS: list[tuple[str, bytes]] = [
    *GENERIC,
    ("capability missing", b'{"input": 1}'),
    ("capability not a name", b'{"capability": "a.b"}'),
    ("a negative timeout", b'{"capability": "echo", "timeout": -1}'),
    ("a timeout that is a string", b'{"capability": "echo", "timeout": "soon"}'),
    ("deep input", b'{"capability": "echo", "input": ' + DEEP + b"}"),
    ("a surrogate in the input", b'{"capability": "echo", "input": ' + SURROGATE + b"}"),
]

LIST_QUERIES: list[tuple[str, bytes]] = [
    # An empty body means "everything", so it is left out here.
    *[(name, payload) for name, payload in GENERIC if payload],
    ("a negative offset", b'{"offset": -1}'),
    ("limit 0", b'{"limit": 0}'),
    ("a limit that is a string", b'{"limit": "ten"}'),
    ("an unknown status", b'{"status": "sleeping"}'),
    ("a capability with a surrogate", b'{"capability": ' + SURROGATE + b"}"),
]


@attrs.define
class Watch:
    """The node under attack, and what a healthy node looks like from outside."""

    node: Node
    bus: Bus
    beats: Subscription

    async def assert_healthy(self, case: str) -> None:
        context = client_context(self.bus)
        with trio.fail_after(5):
            answer = await context.ask("alpha", f"still there after {case}?")
        assert answer.message == f"still there after {case}?", case
        await self.next_beat(case)
        supervisor = self.node.supervisor
        assert supervisor is not None
        assert supervisor.statistics().restarts == 0, f"the node restarted a child after {case}"
        for running in self.node.agents.values():
            assert running.statistics().restarts == 0, f"{running.id} restarted after {case}"
        listed = {a.id: a.status for a in await context.list_agents()}
        assert listed["alpha"] is Presence.ONLINE, case

    async def next_beat(self, case: str) -> None:
        """The next heartbeat of the real alpha (the attack may forge some on its subject)."""
        instance = self.node.agents["alpha"].instance
        with trio.fail_after(2):
            while True:
                try:
                    beat = decode_json((await self.beats.receive()).data)
                except ProtocolError:
                    continue
                if isinstance(beat, dict) and beat.get("instance") == instance:
                    return
        raise AssertionError(f"no heartbeat after {case}")  # pragma: no cover


@asynccontextmanager
async def attacked(nats_server: NatsServer, **changes: Any) -> AsyncIterator[Watch]:
    # A strict restart intensity: any crash at all would end the agent quickly.
    strict = SupervisionPolicy(max_restarts=1, period=60)
    agents = [
        agent("alpha", ["echo"], supervision=strict, heartbeat_interval=0.1),
        agent("beta", ["word_count"], supervision=strict, heartbeat_interval=0.1),
    ]
    spec = node_spec(
        nats_server.url, agents, intensity=Intensity(max_restarts=1, period=60), **changes
    )
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe(agent_status("alpha")) as beats,
    ):
        await bus.flush()
        yield Watch(node, bus, beats)


async def test_messages_on_the_inbox(nats_server: NatsServer) -> None:
    async with attacked(nats_server) as watch:
        for case, payload in MESSAGES:
            await watch.bus.publish("agent.alpha.message", payload)
            await watch.assert_healthy(case)
        stats = watch.node.agents["alpha"].statistics()
    assert stats.malformed == len(MESSAGES) - 2  # the unknown target and the response are valid
    assert stats.restarts == 0


async def test_broadcasts(nats_server: NatsServer) -> None:
    async with attacked(nats_server) as watch:
        for case, payload in MESSAGES:
            await watch.bus.publish(AGENT_BROADCAST, payload)
            await watch.assert_healthy(case)


async def test_malformed_messages_with_a_reply_subject_get_one_bad_request(
    nats_server: NatsServer,
) -> None:
    async with attacked(nats_server) as watch:
        for case, payload in MESSAGES[:-2]:  # the last two are valid messages
            with trio.fail_after(2):
                reply = await watch.bus.request("agent.alpha.message", payload, timeout=2)
            document = json.loads(reply.data)
            error = document.get("error") or document["metadata"]["error"]
            assert error["code"] == "bad_request", case
            assert error["message"].startswith("invalid message: "), case
        await watch.assert_healthy("all of them")


async def test_a_malformed_but_attributable_message_is_refused_to_its_sender(
    nats_server: NatsServer,
) -> None:
    async with attacked(nats_server) as watch, watch.bus.subscribe("agent.mallory.message") as box:
        await watch.bus.flush()
        await watch.bus.publish("agent.alpha.message", message(type="shout", id="q-7"))
        with trio.fail_after(2):
            refusal: Message = (await box.receive()).decode()
        # A malformed response is never answered, not even to refuse it (loops).
        await watch.bus.publish("agent.alpha.message", message(type="response", message=None))
        await watch.assert_healthy("the refusal")
        assert box.statistics().pending == 0
    assert refusal.type.value == "response"
    assert (refusal.sender, refusal.to, refusal.in_reply_to) == ("alpha", "mallory", "q-7")
    assert refusal.metadata["error"] == {
        "code": "bad_request",
        "message": "invalid message: type: 'shout' is not one of text, command, query, response",
    }


async def test_statuses_and_announces(nats_server: NatsServer) -> None:
    async with attacked(nats_server) as watch:
        for case, payload in STATUSES:
            await watch.bus.publish(AGENT_ANNOUNCE, payload)
            await watch.bus.publish("agent.mallory.status", payload)
            await watch.assert_healthy(case)
        # Nothing poisoned was stored: every entry can still be listed.
        listed = await client_context(watch.bus).list_agents()
    assert {a.id for a in listed} == {"alpha", "beta"}


async def test_capability_requests_get_bad_request_at_once(nats_server: NatsServer) -> None:
    async with attacked(nats_server) as watch:
        for subject in (CAPABILITY_REQUEST, "capability.invoke.echo"):
            for case, payload in REQUESTS:
                start = trio.current_time()
                reply = await watch.bus.request(subject, payload, timeout=2)
                elapsed = trio.current_time() - start
                document = json.loads(reply.data)
                assert document["ok"] is False, (subject, case)
                assert document["error"]["code"] == "bad_request", (subject, case)
                assert elapsed < 0.5, (subject, case, elapsed)
            # Without a reply subject nobody waits: nothing to answer, nothing breaks.
            for _case, payload in REQUESTS:
                await watch.bus.publish(subject, payload)
            await watch.assert_healthy(subject)


async def test_list_queries_get_bad_request_at_once(nats_server: NatsServer) -> None:
    async with attacked(nats_server) as watch:
        for case, payload in LIST_QUERIES:
            start = trio.current_time()
            reply = await watch.bus.request(MCP_LIST_AGENTS, payload, timeout=2)
            document = json.loads(reply.data)
            assert document["error"]["code"] == "bad_request", case
            assert document["agents"] == [], case
            assert trio.current_time() - start < 0.5, case
        for _case, payload in LIST_QUERIES:
            await watch.bus.publish(MCP_LIST_AGENTS, payload)
        await watch.assert_healthy("list queries")


async def test_claims_and_the_service_api(nats_server: NatsServer) -> None:
    async with attacked(nats_server) as watch:
        for case, payload in GENERIC:
            await watch.bus.publish(AGENT_CLAIM, payload, reply="_INBOX.hostile.claim")
            for subject in ("$SRV.PING", "$SRV.INFO.volta-agent", "$SRV.STATS.volta-agent.alpha"):
                await watch.bus.publish(subject, payload, reply="_INBOX.hostile.srv")
            await watch.assert_healthy(case)
        # The service API still answers, whatever it was sent before.
        reply = await watch.bus.request("$SRV.PING.volta-agent.alpha", DEEP, timeout=2)
    assert json.loads(reply.data)["id"] == "alpha"


async def test_an_answer_too_large_for_the_server_becomes_an_error(nats_server: NatsServer) -> None:
    async with attacked(nats_server) as watch:
        limit = watch.bus.max_payload
        # A query just under max_payload: its echo, with in_reply_to added, is not.
        envelope = len(encode_message(Message(sender="tester", to="alpha", message="")))
        text = "x" * (limit - envelope - 10)
        with pytest.raises(AskFailed) as caught:
            await client_context(watch.bus).ask("alpha", text)
        assert caught.value.code == ErrorCode.PAYLOAD_TOO_LARGE.value
        assert f"above the server's max_payload of {limit} bytes" in caught.value.message
        await watch.assert_healthy("an answer too large")


class Grows(EchoHandler):
    """Serves ``grow``: a string of as many characters as asked for."""

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return "x" * int(input)


async def test_a_capability_result_too_large_becomes_an_error(nats_server: NatsServer) -> None:
    spec = node_spec(nats_server.url, [agent("grower", ["grow"], handler=Grows())])
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        context = client_context(bus)
        assert await context.request_capability("grow", 3) == "xxx"
        with pytest.raises(CapabilityFailed) as caught:
            await context.request_capability("grow", bus.max_payload)
        assert await context.request_capability("grow", 2) == "xx"
        assert node.agents["grower"].statistics().restarts == 0
    assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert caught.value.agent == "grower"
    assert "above the server's max_payload" in caught.value.message


async def test_poison_beyond_the_restart_intensity_never_escalates(nats_server: NatsServer) -> None:
    """The poisons that once ended the node in 2.5 s, each sent 30 times (intensity: 1)."""
    poisons = [payload for _case, payload in MESSAGES + STATUSES + REQUESTS]
    async with attacked(nats_server) as watch:
        for _ in range(30):
            for payload in poisons:
                await watch.bus.publish("agent.alpha.message", payload)
                await watch.bus.publish(AGENT_BROADCAST, payload)
                await watch.bus.publish(AGENT_ANNOUNCE, payload)
                await watch.bus.publish(CAPABILITY_REQUEST, payload, reply="_INBOX.x.y")
                await watch.bus.publish(MCP_LIST_AGENTS, payload, reply="_INBOX.x.z")
        await watch.bus.flush()
        await watch.assert_healthy("the poison flood")


async def test_live_fuzz_through_every_subject(nats_server: NatsServer) -> None:
    """Random mutations of valid payloads, thrown at every subject (seeded: repeatable)."""
    rng = random.Random(20261201)
    seeds = [payload for _case, payload in MESSAGES + STATUSES + REQUESTS + LIST_QUERIES]
    subjects = [
        "agent.alpha.message",
        AGENT_BROADCAST,
        AGENT_ANNOUNCE,
        "agent.alpha.status",
        CAPABILITY_REQUEST,
        "capability.invoke.echo",
        MCP_LIST_AGENTS,
        AGENT_CLAIM,
    ]
    async with attacked(nats_server) as watch:
        for round_ in range(4):
            for _ in range(500):
                payload = bytearray(rng.choice(seeds))
                for _flip in range(rng.randint(0, 4)):
                    if payload:
                        payload[rng.randrange(len(payload))] = rng.randrange(256)
                if rng.random() < 0.2:
                    payload = bytearray(rng.randbytes(rng.randint(0, 200)))
                reply = "_INBOX.fuzz.r" if rng.random() < 0.5 else None
                await watch.bus.publish(rng.choice(subjects), bytes(payload), reply=reply)
            await watch.bus.flush()
            await watch.assert_healthy(f"fuzz round {round_}")


class Slow(EchoHandler):
    """Takes 10 ms per message, and ``slow`` capability calls take a second."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        await trio.sleep(0.01)
        return message.message

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        await trio.sleep(1.0)
        return input


async def test_a_flood_at_one_inbox_stays_within_its_bounds_and_is_counted(
    nats_server: NatsServer,
) -> None:
    flood = 10_000
    spec = node_spec(
        nats_server.url,
        [agent("alpha", handler=Slow(), inbox_buffer=100, max_concurrency=4)],
    )
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe(agent_status("alpha")) as beats,
        node.events.watch(100_000) as events,
    ):
        payload = message(type="text")
        for _ in range(flood):
            await bus.publish("agent.alpha.message", payload)
        await bus.flush()
        alpha = node.agents["alpha"]

        def pending() -> SubscriptionStatistics:
            return alpha.inbox_statistics()[0]

        with trio.fail_after(10):
            while (
                alpha.statistics().dropped + alpha.statistics().handled + pending().pending < flood
            ):
                await trio.sleep(0.01)
            # Never more held than the bounds allow, while it works through them.
            assert pending().pending <= 100
        stats = alpha.statistics()
        assert stats.dropped >= flood - 100 - 4 - stats.handled
        # The drops are told: in the heartbeat, and as events with the count.
        with trio.fail_after(5):
            while True:
                beat = json.loads((await beats.receive()).data)
                if beat.get("dropped", 0) > 0:
                    break
        slow = []
        while True:
            try:
                event = events.receive_nowait()
            except trio.WouldBlock:
                break
            if (
                isinstance(event, ConnectionEvent)
                and event.kind is ConnectionEventKind.SLOW_CONSUMER
            ):
                slow.append(event.detail)
        assert slow[:1] == ["agent.alpha.message: buffer full"]
        assert alpha.statistics().restarts == 0


async def test_bad_requests_never_disturb_the_requests_in_flight(nats_server: NatsServer) -> None:
    spec = node_spec(nats_server.url, [agent("slowpoke", ["slow"], handler=Slow())])
    async with running_node(spec), open_bus(nats_server.url) as bus:
        results: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def slow_call(n: int) -> None:
                results.append(await client_context(bus).request_capability("slow", n))

            for n in range(5):
                nursery.start_soon(slow_call, n)
            await trio.sleep(0.2)  # they are in flight (they take a second)
            for _case, payload in REQUESTS:
                reply = json.loads((await bus.request(CAPABILITY_REQUEST, payload, timeout=2)).data)
                assert reply["error"]["code"] == "bad_request"
        assert sorted(results) == [0, 1, 2, 3, 4]
