"""The NATS service API (ADR-32): agents as instances of 'volta-agent'.

Replies are checked with nats-py's own ``nats.micro`` response types, so they
are what standard NATS tooling expects. Real nats-server, real time.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats

from volta.actors import CapabilityFailed
from volta.bus import Bus, NatsServer, open_bus

from ..mesh import client_context, node_spec, running_node, seed_agents


async def gather_replies(
    bus: Bus, subject: str, *, expect: int, wait: float = 5.0
) -> list[dict[str, Any]]:
    """Publish a request and collect replies for a moment (as `nats micro` does).

    Then check that no more come: a marker request that the same subscription of
    the node answers (it answers in order) is answered after every reply to the
    first, so once the marker's reply is here and our connection is flushed, any
    extra reply to the first would be waiting in the inbox.
    """
    tokens = subject.split(".")
    marker = ".".join([*tokens[:3], "alpha"]) if len(tokens) == 4 else subject
    async with bus.subscribe("_INBOX.srv.test") as inbox, bus.subscribe("_INBOX.srv.mark") as mark:
        await bus.flush()
        await bus.publish(subject, b"", reply="_INBOX.srv.test")
        replies: list[dict[str, Any]] = []
        with trio.move_on_after(wait):
            while len(replies) < expect:
                replies.append(json.loads((await inbox.receive()).data))
        await bus.publish(marker, b"", reply="_INBOX.srv.mark")
        with trio.fail_after(5):
            await mark.receive()
        await bus.flush()
        assert inbox.statistics().pending == 0, "more replies than expected"
    return replies


async def test_ping_reaches_every_agent(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())),
        open_bus(nats_server.url) as bus,
    ):
        for subject in ("$SRV.PING", "$SRV.PING.volta-agent"):
            replies = await gather_replies(bus, subject, expect=3)
            pings = [ServicePing.from_dict(reply) for reply in replies]
            assert sorted(p.id for p in pings) == ["alpha", "beta", "gamma"]
            assert {p.name for p in pings} == {"volta-agent"}
            assert {reply["type"] for reply in replies} == {"io.nats.micro.v1.ping_response"}


async def test_info_lists_the_capabilities_as_endpoints(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())),
        open_bus(nats_server.url) as bus,
    ):
        [reply] = await gather_replies(bus, "$SRV.INFO.volta-agent.gamma", expect=1)
    info = ServiceInfo.from_dict(reply)
    assert info.id == "gamma"
    assert [(e.name, e.subject, e.queue_group) for e in info.endpoints] == [
        ("word_count", "capability.invoke.word_count", "capability.invoke.word_count"),
        ("sum", "capability.invoke.sum", "capability.invoke.sum"),
    ]


async def test_stats_count_requests_and_errors(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())),
        open_bus(nats_server.url) as bus,
    ):
        context = client_context(bus)
        for n in range(3):
            assert await context.request_capability("sum", [n, 1]) == n + 1
        with pytest.raises(CapabilityFailed, match="bad_request"):
            await context.request_capability("sum", "not numbers")
        [reply] = await gather_replies(bus, "$SRV.STATS.volta-agent.gamma", expect=1)
    stats = ServiceStats.from_dict(reply)
    by_name = {endpoint.name: endpoint for endpoint in stats.endpoints}
    assert by_name["sum"].num_requests == 4
    assert by_name["sum"].num_errors == 1
    assert "bad_request" in (by_name["sum"].last_error or "")
    assert by_name["sum"].processing_time > 0
    assert by_name["word_count"].num_requests == 0


async def test_requests_for_unknown_instances_get_no_reply(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())),
        open_bus(nats_server.url) as bus,
    ):
        replies = await gather_replies(bus, "$SRV.PING.volta-agent.nobody", expect=1, wait=0.5)
        assert replies == []
