"""The capability router, branch by branch, with the exact code and words of each reply.

Each test drives one decision of ``node/_router.py`` so that a router that
skipped it would answer differently: a rogue subscriber that is not in the
directory, a provider that is listed but not subscribed, a caller timeout much
shorter than the router's default, an agent that answers garbage.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from volta.actors import CapabilityFailed
from volta.bus import Bus, NatsServer, open_bus
from volta.node import CapabilityRouter, Directory, RouterSpec
from volta.protocol import AGENT_ANNOUNCE, CAPABILITY_REQUEST, AgentStatus, ErrorCode

from ..actors.test_agents import Hangs
from ..mesh import agent, client_context, node_spec, running_node, wait_until


async def request(bus: Bus, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    reply = await bus.request(CAPABILITY_REQUEST, json.dumps(body).encode(), timeout=timeout)
    document: dict[str, Any] = json.loads(reply.data)
    return document


async def test_an_unlisted_subscriber_is_never_asked(nats_server: NatsServer) -> None:
    """The router checks the directory first: no listed provider, no forwarding at all."""
    spec = node_spec(nats_server.url, [agent("alpha", ["echo"])])
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe("capability.invoke.secret", queue="capability.invoke.secret") as rogue,
    ):
        await bus.flush()
        # A node that has just started waits out its roll call before it trusts an
        # empty answer (tests/node/test_restarts.py); after that, none at once.
        await wait_until(lambda: not node.directory.settling(trio.current_time()))
        start = trio.current_time()
        reply = await request(bus, {"capability": "secret", "input": 1, "timeout": 30}, timeout=2)
        elapsed = trio.current_time() - start
        # A marker request that is routed, to be sure the rogue would have seen the first.
        assert (await request(bus, {"capability": "echo", "input": 2}))["ok"] is True
        assert rogue.statistics().pending == 0, "the router forwarded to an unlisted agent"
    assert reply == {
        "ok": False,
        "error": {
            "code": "no_capability",
            "message": "no online agent has the capability 'secret'",
        },
    }
    assert elapsed < 1


async def test_a_listed_provider_that_is_not_subscribed_is_no_capability_at_once(
    nats_server: NatsServer,
) -> None:
    """NoResponders from capability.invoke.<name> means nobody serves it: not a timeout."""
    spec = node_spec(nats_server.url, [agent("alpha", ["echo"])])
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        ghost = {"id": "ghost", "capabilities": ["haunt"], "heartbeat_interval": 30}
        await bus.publish(AGENT_ANNOUNCE, json.dumps(ghost).encode())
        await wait_until(lambda: node.directory.providers("haunt") == ["ghost"])
        start = trio.current_time()
        reply = await request(bus, {"capability": "haunt", "timeout": 30})
        elapsed = trio.current_time() - start
    assert reply == {
        "ok": False,
        "error": {"code": "no_capability", "message": "no agent serves 'haunt' right now"},
    }
    assert elapsed < 1


async def test_the_router_waits_as_long_as_the_caller_says(nats_server: NatsServer) -> None:
    """timeout=0.3 with a router default of 5 s: the router's own reply comes at 0.3 s."""
    agents = [agent("stuck", ["slow"], handler=Hangs(), capability_timeout=30)]
    spec = node_spec(nats_server.url, agents, request_timeout=5.0)
    async with running_node(spec), open_bus(nats_server.url) as bus:
        start = trio.current_time()
        reply = await request(bus, {"capability": "slow", "timeout": 0.3}, timeout=10)
        elapsed = trio.current_time() - start
        with pytest.raises(CapabilityFailed) as caught:
            await client_context(bus).request_capability("slow", 1, timeout=0.3)
    assert reply == {
        "ok": False,
        "error": {"code": "timeout", "message": "no agent answered 'slow' within 0.3 s"},
    }
    assert 0.3 <= elapsed < 1.5
    # The client sees the router's reply (with its words), not its own margin running out.
    assert caught.value.code is ErrorCode.TIMEOUT
    assert caught.value.message == "no agent answered 'slow' within 0.3 s"


async def test_the_router_caps_what_a_caller_may_ask_it_to_wait(nats_server: NatsServer) -> None:
    """A router alone (no node): a caller asking for 1e9 s waits max_timeout at most."""
    directory = Directory()
    directory.observe(AgentStatus(id="stuck", name="stuck", capabilities=("slow",)), 0.0, "x")
    async with (
        open_bus(nats_server.url) as bus,
        bus.subscribe("capability.invoke.slow", queue="capability.invoke.slow") as silent,
        trio.open_nursery() as nursery,
    ):
        router = CapabilityRouter(directory, bus, spec=RouterSpec(max_timeout=0.3))
        await nursery.start(router.run)
        start = trio.current_time()
        reply = await request(bus, {"capability": "slow", "timeout": 1e9}, timeout=10)
        elapsed = trio.current_time() - start
        forwarded = json.loads((await silent.receive()).data)
        nursery.cancel_scope.cancel()
    assert reply["error"] == {"code": "timeout", "message": "no agent answered 'slow' within 0.3 s"}
    assert elapsed < 1.5
    assert forwarded["timeout"] == 0.3  # the agent is told the wait that applies
    assert (router.routed, router.failed, router.errors) == (1, 1, 0)


async def test_an_agent_reply_that_does_not_decode_is_agent_error(
    nats_server: NatsServer,
) -> None:
    spec = node_spec(nats_server.url, [agent("alpha", ["echo"])])
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        liar = {"id": "liar", "capabilities": ["lie"], "heartbeat_interval": 30}
        async with bus.subscribe("capability.invoke.lie", queue="capability.invoke.lie") as calls:
            await bus.publish(AGENT_ANNOUNCE, json.dumps(liar).encode())
            await wait_until(lambda: node.directory.providers("lie") == ["liar"])
            async with trio.open_nursery() as nursery:

                async def answer_garbage() -> None:
                    async for call in calls:
                        await bus.respond(call, b'{"ok": "maybe"}')

                nursery.start_soon(answer_garbage)
                reply = await request(bus, {"capability": "lie"})
                nursery.cancel_scope.cancel()
    assert reply == {
        "ok": False,
        "error": {
            "code": "agent_error",
            "message": "malformed agent reply: ok: expected true or false, got str",
        },
    }


async def test_a_request_without_reply_subject_is_not_routed(nats_server: NatsServer) -> None:
    agents = [agent("alpha", ["echo"])]
    async with running_node(node_spec(nats_server.url, agents)), open_bus(nats_server.url) as bus:
        async with bus.subscribe("capability.invoke.echo", queue="other") as spy:
            await bus.flush()
            await bus.publish(CAPABILITY_REQUEST, b'{"capability": "echo", "input": 1}')
            # A routed request after it: the spy sees that one, and only that one.
            assert (await request(bus, {"capability": "echo", "input": 2}))["ok"] is True
            with trio.fail_after(5):
                seen = json.loads((await spy.receive()).data)
            assert spy.statistics().pending == 0
    assert seen["input"] == 2
