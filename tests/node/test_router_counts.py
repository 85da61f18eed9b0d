"""The capability router's guarantees that a count shows: one reply per request,
counters that match what it answered, and the limits it applies by default.

A router alone (no node) reads its counters; a raw subscriber on
``capability.invoke.<name>`` plays the agent where the test needs one that is
silent, slow or odd. Real nats-server, real time, every wait bounded.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from volta.bus import Bus, Delivery, NatsServer, Subscription, open_bus
from volta.node import CapabilityRouter, Directory, RouterSpec
from volta.protocol import CAPABILITY_REQUEST, AgentStatus, CapabilityReply

from ..mesh import agent, node_spec, running_node, wait_until


def body(capability: str, **fields: Any) -> bytes:
    return json.dumps({"capability": capability, **fields}).encode()


async def request(bus: Bus, payload: bytes) -> dict[str, Any]:
    reply = await bus.request(CAPABILITY_REQUEST, payload, timeout=5)
    document: dict[str, Any] = json.loads(reply.data)
    return document


def listing(provider: str, capabilities: Sequence[str]) -> Directory:
    """A directory in which ``provider`` is online with ``capabilities``."""
    directory = Directory()
    status = AgentStatus(id=provider, name=provider, capabilities=tuple(capabilities))
    directory.observe(status, 0.0, "test")
    return directory


@asynccontextmanager
async def router_alone(
    bus: Bus, directory: Directory, **options: Any
) -> AsyncIterator[CapabilityRouter]:
    router = CapabilityRouter(directory, bus, spec=RouterSpec(**options))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            await nursery.start(router.run)
        yield router
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def agent_answering(
    bus: Bus, capability: str, answer: Callable[[bytes], bytes]
) -> AsyncIterator[Subscription]:
    """A raw subscriber on ``capability.invoke.<capability>`` that answers each call
    with ``answer(request payload)``; yields its subscription."""
    subject = f"capability.invoke.{capability}"
    async with bus.subscribe(subject, queue=subject) as calls, trio.open_nursery() as nursery:

        async def serve() -> None:
            async for call in calls:
                await bus.respond(call, answer(call.data))

        nursery.start_soon(serve)
        await bus.flush()
        yield calls
        nursery.cancel_scope.cancel()


FINE = b'{"ok": true, "result": "fine", "agent": "alpha"}'


def echo_input(data: bytes) -> bytes:
    return json.dumps({"ok": True, "result": json.loads(data)["input"], "agent": "alpha"}).encode()


async def test_two_routers_answer_a_capability_request_once(nats_server: NatsServer) -> None:
    """Routers share ``volta.router``: however many nodes run, one reply per request."""
    async with (
        running_node(node_spec(nats_server.url, [agent("alpha", ["echo"])], name="one")),
        running_node(node_spec(nats_server.url, [agent("beta")], name="two")) as second,
        open_bus(nats_server.url) as bus,
        bus.subscribe("_INBOX.routed.*") as replies,
    ):
        await wait_until(lambda: second.directory.providers("echo") == ["alpha"])
        # Many requests: in a shared queue group both routers get some; without one,
        # each router would answer each of them.
        count = 40
        for n in range(count):
            await bus.publish(CAPABILITY_REQUEST, body("echo", input=n), reply=f"_INBOX.routed.{n}")
        seen: list[str] = []
        with trio.fail_after(10):
            while len(seen) < count:
                reply = await replies.receive()
                assert reply.subject not in seen, f"a second reply on {reply.subject}"
                assert json.loads(reply.data)["ok"] is True
                seen.append(reply.subject)
        # As many again: a late second reply to one of the first would show up among
        # the replies to these.
        for n in range(count, 2 * count):
            await bus.publish(CAPABILITY_REQUEST, body("echo", input=n), reply=f"_INBOX.routed.{n}")
        with trio.fail_after(10):
            while len(seen) < 2 * count:
                reply = await replies.receive()
                assert reply.subject not in seen, f"a second reply on {reply.subject}"
                seen.append(reply.subject)
        await bus.flush()
        assert replies.statistics().pending == 0
    assert sorted(seen) == sorted(f"_INBOX.routed.{n}" for n in range(2 * count))


async def test_the_router_counts_what_it_answers_and_what_nobody_waits_for(
    nats_server: NatsServer,
) -> None:
    async with (
        open_bus(nats_server.url) as bus,
        agent_answering(bus, "echo", echo_input) as calls,
        router_alone(bus, listing("alpha", ["echo"])) as router,
    ):
        assert (router.routed, router.failed, router.errors, router.ignored) == (0, 0, 0, 0)
        # Nobody waits for these two: not routed, only counted.
        await bus.publish(CAPABILITY_REQUEST, body("echo", input="lost"))
        await bus.publish(CAPABILITY_REQUEST, body("echo", input="lost"))
        # The router reads its requests in order: the replies below come after it
        # judged the two above.
        assert (await request(bus, body("echo", input=1)))["result"] == 1
        assert (await request(bus, body("fly")))["error"]["code"] == "no_capability"
        assert (await request(bus, b"{broken"))["error"]["code"] == "bad_request"
        assert (await request(bus, body("echo", input=2)))["result"] == 2
        # The counters move just after the reply is handed to the bus.
        await wait_until(lambda: router.routed >= 4)
        counts = (router.routed, router.failed, router.errors, router.ignored)
        assert calls.statistics().pending == 0
    assert counts == (4, 2, 0, 2)


class BrokenDirectory(Directory):
    """A directory with a bug: asking it about ``broken`` raises."""

    def providers(self, capability: str) -> list[str]:
        if capability == "broken":
            raise RuntimeError("a bug in the directory")
        return super().providers(capability)


async def test_a_failure_inside_the_router_is_agent_error_for_that_request_alone(
    nats_server: NatsServer,
) -> None:
    directory = BrokenDirectory()
    directory.observe(AgentStatus(id="alpha", name="alpha", capabilities=("echo",)), 0.0, "x")
    async with (
        open_bus(nats_server.url) as bus,
        agent_answering(bus, "echo", lambda _: FINE),
        router_alone(bus, directory) as router,
    ):
        broken = await request(bus, body("broken", input=1))
        assert (await request(bus, body("echo", input=1)))["result"] == "fine"
        broken_again = await request(bus, body("broken", input=2))
        await wait_until(lambda: router.routed >= 3)
        counts = (router.routed, router.failed, router.errors)
    assert broken == {
        "ok": False,
        "error": {"code": "agent_error", "message": "the router failed: RuntimeError"},
    }
    assert broken_again == broken
    assert counts == (3, 2, 2)


async def test_an_agent_reply_too_large_once_re_encoded_is_payload_too_large(
    nats_server: NatsServer,
) -> None:
    """The agent's reply fits, but the router re-encodes it (``1e5`` is ``100000.0``)."""
    async with (
        open_bus(nats_server.url) as bus,
        bus.subscribe("capability.invoke.grow", queue="capability.invoke.grow") as calls,
        router_alone(bus, listing("grower", ["grow"])) as router,
        trio.open_nursery() as nursery,
    ):
        limit = bus.max_payload
        items = (limit // 2) // len("1e5,")
        compact = b'{"ok": true, "agent": "grower", "result": [' + b",".join([b"1e5"] * items)
        compact += b"]}"
        assert len(compact) < limit
        re_encoded = len(json.dumps({"ok": True, "result": [100000.0] * items}))
        assert re_encoded > limit

        async def serve() -> None:
            async for call in calls:
                await bus.respond(call, compact)

        nursery.start_soon(serve)
        reply = await request(bus, body("grow"))
        await wait_until(lambda: router.routed >= 1)
        counts = (router.routed, router.failed, router.errors)
        nursery.cancel_scope.cancel()
    assert reply["ok"] is False
    assert reply["agent"] == "grower"
    assert reply["error"]["code"] == "payload_too_large"
    assert reply["error"]["message"].startswith("the agent's reply, once re-encoded, is ")
    assert reply["error"]["message"].endswith(f"above the server's max_payload of {limit} bytes")
    assert counts == (1, 1, 0)


async def test_by_default_an_agent_is_given_10_s_and_at_most_5_minutes(
    nats_server: NatsServer,
) -> None:
    """What the router tells the agent, with its default limits, for no timeout and 1e9 s."""
    async with (
        open_bus(nats_server.url) as bus,
        bus.subscribe("capability.invoke.slow", queue="capability.invoke.slow") as silent,
        router_alone(bus, listing("stuck", ["slow"])),
    ):
        # Nobody waits for the replies (they come only when the router gives up).
        await bus.publish(CAPABILITY_REQUEST, body("slow"), reply="_INBOX.limits.1")
        await bus.publish(CAPABILITY_REQUEST, body("slow", timeout=1e9), reply="_INBOX.limits.2")
        with trio.fail_after(5):
            forwarded = [json.loads((await silent.receive()).data) for _ in range(2)]
    assert sorted(request["timeout"] for request in forwarded) == [10.0, 300.0]


async def test_past_64_calls_of_one_capability_or_256_in_all_the_next_is_busy_at_once(
    nats_server: NatsServer,
) -> None:
    """The defaults ``max_per_capability`` and ``max_concurrency``, against a silent agent:
    4 capabilities x 64 calls fill the router; calls beyond either limit are refused."""
    capabilities = ["c0", "c1", "c2", "c3", "c4"]
    async with (
        open_bus(nats_server.url) as bus,
        bus.subscribe("capability.invoke.*") as silent,
        bus.subscribe("_INBOX.flight.*") as early,
        router_alone(bus, listing("stuck", capabilities)) as router,
    ):

        async def fill(capability: str, numbers: range) -> None:
            for n in numbers:
                payload = body(capability, input=n, timeout=60)
                await bus.publish(CAPABILITY_REQUEST, payload, reply=f"_INBOX.flight.{n}")
            await wait_until(lambda: router.in_flight == numbers.stop, timeout=10)

        await fill("c0", range(64))
        one_too_many = await request(bus, body("c0", timeout=60))
        for k, capability in enumerate(capabilities[1:4], start=1):
            await fill(capability, range(64 * k, 64 * (k + 1)))
        full = await request(bus, body("c4", timeout=60))
        assert silent.statistics().pending == 256
        assert early.statistics().pending == 0, "a request in flight was answered early"
    assert one_too_many == {
        "ok": False,
        "error": {"code": "busy", "message": "64 calls of 'c0' are in flight"},
    }
    assert full == {
        "ok": False,
        "error": {"code": "busy", "message": "the router has 256 requests in flight"},
    }


async def test_a_flood_is_answered_busy_as_it_comes_with_at_most_twice_max_concurrency_pending(
    nats_server: NatsServer,
) -> None:
    """With ``max_concurrency=1`` and a silent agent: 200 requests at once, each gets one
    reply; past 2 pending the router answers ``busy`` without a task (``shed``), and it
    routes on afterwards with nothing left pending."""
    count = 200
    async with (
        open_bus(nats_server.url) as bus,
        bus.subscribe("capability.invoke.slow", queue="capability.invoke.slow") as silent,
        bus.subscribe("_INBOX.flood.*") as replies,
        router_alone(bus, listing("stuck", ["slow"]), max_concurrency=1) as router,
    ):
        assert (router.pending, router.peak_pending, router.shed) == (0, 0, 0)
        for n in range(count):
            await bus.publish(
                CAPABILITY_REQUEST, body("slow", input=n, timeout=0.5), reply=f"_INBOX.flood.{n}"
            )
        await bus.flush()
        answered: dict[str, dict[str, Any]] = {}
        with trio.fail_after(10):
            while len(answered) < count:
                reply = await replies.receive()
                assert reply.subject not in answered, f"two replies on {reply.subject}"
                answered[reply.subject] = json.loads(reply.data)
        await wait_until(lambda: router.pending == 0)
        counts = (router.routed, router.failed, router.shed, router.peak_pending)
        forwarded = silent.statistics().delivered + silent.statistics().pending
        # The router still routes after the flood (a later request, its own reply).
        later = await request(bus, body("nobody"))
    codes = [document["error"]["code"] for document in answered.values()]
    assert codes.count("timeout") == forwarded >= 1
    assert codes.count("busy") == count - forwarded
    busy = collections.Counter(
        d["error"]["message"] for d in answered.values() if d["error"]["code"] == "busy"
    )
    flooded = "the router is flooded: 2 requests pending"
    assert set(busy) <= {"the router has 1 requests in flight", flooded}
    routed, failed, shed, peak = counts
    assert (routed, failed) == (count, count)
    assert shed >= 1, "a burst never found 2 requests pending (none shed)"
    assert shed == busy[flooded], "shed does not count the requests answered as they came"
    assert peak == 2, f"{peak} requests pending at once, the bound is 2 * max_concurrency"
    assert later["error"]["code"] == "no_capability"


async def test_each_call_leaves_nothing_in_flight_so_one_per_capability_is_enough(
    nats_server: NatsServer,
) -> None:
    async with (
        open_bus(nats_server.url) as bus,
        agent_answering(bus, "echo", lambda _: FINE),
        router_alone(bus, listing("alpha", ["echo"]), max_per_capability=1) as router,
    ):
        results = [(await request(bus, body("echo", input=n))).get("result") for n in range(3)]
        await wait_until(lambda: router.pending == 0)
        in_flight = router.in_flight
    assert results == ["fine", "fine", "fine"], "a call that ended still counts as in flight"
    assert in_flight == 0


async def test_a_request_too_large_once_the_router_adds_its_timeout_is_payload_too_large(
    nats_server: NatsServer,
) -> None:
    async with (
        open_bus(nats_server.url) as bus,
        bus.subscribe("capability.invoke.echo", queue="capability.invoke.echo") as calls,
        router_alone(bus, listing("alpha", ["echo"])) as router,
    ):
        limit = bus.max_payload
        payload = body("echo", input="x" * (limit - 40))
        assert len(payload) < limit
        reply = await request(bus, payload)
        await wait_until(lambda: router.pending == 0)
        forwarded = calls.statistics().delivered + calls.statistics().pending
    assert reply["ok"] is False
    assert reply["error"]["code"] == "payload_too_large"
    message = reply["error"]["message"]
    assert message.startswith("the request is ")
    assert " bytes once re-encoded" in message
    assert message.endswith(f"above the server's max_payload of {limit} bytes")
    assert int(message.split()[3]) > limit
    assert forwarded == 0


async def test_failures_inside_the_router_are_logged_once_then_summarised(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The first failure is a WARNING naming the error; the next ones within
    ``report_interval`` are held back and summarised when the window has passed."""
    directory = BrokenDirectory()
    caplog.set_level(logging.WARNING, logger="volta.node.router")
    async with (
        open_bus(nats_server.url, report_interval=1.0) as bus,
        router_alone(bus, directory) as router,
    ):
        for _ in range(3):
            assert (await request(bus, body("broken")))["error"]["code"] == "agent_error"
        held_back = [record.getMessage() for record in caplog.records]
        await trio.sleep(1.1)  # the window ends; the next failure brings its summary
        await request(bus, body("broken"))
        await wait_until(lambda: router.errors == 4)
        lines = [record.getMessage() for record in caplog.records]
    failure = "routing a capability request failed: RuntimeError('a bug in the directory')"
    assert held_back == [failure]
    assert lines == [failure, "2 more routing failures on route in the last 1 s", failure]


async def test_an_answer_the_bus_cannot_send_is_logged_and_the_router_goes_on(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A reply whose publish fails (the bus closed under it) is logged at INFO once per
    window, naming the error, the rest summarised; each is counted as routed, and
    nothing is raised."""
    caplog.set_level(logging.INFO, logger="volta.node.router")
    async with open_bus(nats_server.url, report_interval=0.3) as bus:
        router = CapabilityRouter(listing("alpha", ["echo"]), bus)
    for n in range(3):
        delivery = Delivery(subject=CAPABILITY_REQUEST, data=body("echo"), reply=f"_INBOX.gone.{n}")
        await router._answer(delivery, CapabilityReply.success("fine", "alpha"))
    await trio.sleep(0.35)  # the window ends: the next failure brings its summary
    delivery = Delivery(subject=CAPABILITY_REQUEST, data=body("echo"), reply="_INBOX.gone.last")
    await router._answer(delivery, CapabilityReply.success("fine", "alpha"))
    assert (router.routed, router.failed, router.errors) == (4, 0, 0)
    lines = [(record.levelno, record.getMessage()) for record in caplog.records]
    failure = (
        logging.INFO,
        "could not answer a capability request: the bus is closed: closed by its owner",
    )
    summary = (logging.INFO, "2 more answers that could not be sent on answer in the last 0 s")
    assert lines == [failure, summary, failure]
