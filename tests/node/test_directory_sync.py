"""DirectoryService.sync: a directory learns what another already knows, page by page,
and a peer that lies cannot keep it (or the node it belongs to) from starting.

Rules: loopback only, a real nats-server per test, real time, every wait bounded.
The peers that lie are fake *directories* on the real server (subscribers of
``mcp.list_agents`` written with the bus), not fakes of NATS; each records the
offsets it was asked for, so "it asked no further" is checked by count, not by time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from volta.bus import Bus, NatsServer, open_bus
from volta.node import Directory, DirectoryService, DirectorySpec, IdentityClash, PresenceChange
from volta.protocol import MCP_LIST_AGENTS, AgentStatus, Presence

from ..mesh import agent, node_spec, running_node

Page = dict[str, Any]


@asynccontextmanager
async def fake_directory(
    url: str, answer: Callable[[int], Page | None], delay: float = 0.0
) -> AsyncIterator[list[int]]:
    """A peer answering ``mcp.list_agents`` with ``answer(offset)`` (None: it stays
    silent), ``delay`` seconds after each request; yields the offsets asked for."""
    asked: list[int] = []
    async with open_bus(url) as bus, bus.subscribe(MCP_LIST_AGENTS) as requests:

        async def serve() -> None:
            async for request in requests:
                offset = json.loads(request.data or b"{}").get("offset", 0)
                asked.append(offset)
                page = answer(offset)
                if page is not None:
                    await trio.sleep(delay)
                    await bus.respond(request, json.dumps(page).encode())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await bus.flush()
            yield asked
            nursery.cancel_scope.cancel()


def fake(offset: int) -> dict[str, str]:
    return {"id": f"fake-{offset:06d}"}


def endless(offset: int) -> Page:
    """One agent a page, for ever."""
    return {"agents": [fake(offset)], "total": 10**9, "next_offset": offset + 1}


def stuck_at(stop: int) -> Callable[[int], Page]:
    """Pages that advance until ``stop``, then a next_offset that does not."""

    def answer(offset: int) -> Page:
        return {"agents": [fake(offset)], "next_offset": offset + 1 if offset < stop else offset}

    return answer


def ids(directory: Directory) -> list[str]:
    return [info.id for info in directory.agents()]


async def learn(bus: Bus, directory: Directory, **options: Any) -> list[PresenceChange]:
    """Sync ``directory`` over ``bus``; the changes it reported."""
    events: list[PresenceChange | IdentityClash] = []
    service = DirectoryService(directory, bus, events.append, spec=DirectorySpec(**options))
    with trio.fail_after(10):
        await service.sync()
    changes = [event for event in events if isinstance(event, PresenceChange)]
    assert len(changes) == len(events)
    return changes


def known_table() -> Directory:
    """A directory with agents of every kind: replicated, busy, offline, anonymous."""
    directory = Directory(30.0)
    now = trio.current_time()
    for n in range(10):
        directory.observe(
            AgentStatus(
                id=f"agent-{n:02d}",
                name=f"Agent number {n}",
                capabilities=("echo", f"skill-{n}"),
                status=Presence.BUSY if n % 3 == 0 else Presence.ONLINE,
                instance=f"i{n}",
                node=f"node-{n}",
            ),
            now,
            "announce",
        )
    for key in ("w1", "w2"):
        worker = AgentStatus(id="worker", name="Worker", instance=key, replicated=True)
        directory.observe(worker, now, "announce")
    directory.observe(AgentStatus(id="gone", name="Gone", status=Presence.OFFLINE), now, "x")
    directory.observe(AgentStatus(id="anonymous", name="No instance id"), now, "announce")
    return directory


async def test_a_second_directory_learns_what_the_first_knows_over_several_pages(
    nats_server: NatsServer,
) -> None:
    first = known_table()
    async with open_bus(nats_server.url) as bus, trio.open_nursery() as nursery:
        # Small pages: two or three agents each.
        service = DirectoryService(first, bus, spec=DirectorySpec(max_page_bytes=700))
        with trio.fail_after(10):
            await nursery.start(service.run)
        async with fake_directory(nats_server.url, lambda _offset: None) as asked:  # a spy
            second = Directory(30.0)
            changes = await learn(bus, second)
        nursery.cancel_scope.cancel()
    assert second.agents() == first.agents()
    assert {(c.agent, c.reason, c.before, c.after) for c in changes} == {
        (info.id, "sync", None, info.status) for info in first.agents()
    }
    # Page by page, each from where the last ended.
    assert len(asked) >= 4
    assert asked[0] == 0
    assert asked == sorted(set(asked))


async def test_a_sync_takes_no_more_agents_than_the_table_holds(nats_server: NatsServer) -> None:
    async with (
        fake_directory(nats_server.url, endless) as asked,
        open_bus(nats_server.url) as bus,
    ):
        second = Directory(30.0, max_agents=5)
        await learn(bus, second, sync_timeout=30.0)
    assert ids(second) == [fake(n)["id"] for n in range(5)]
    assert asked == [0, 1, 2, 3, 4]


async def test_a_sync_stops_where_the_next_offset_does_not_advance(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "volta.node.directory")
    async with (
        fake_directory(nats_server.url, stuck_at(2)) as asked,
        open_bus(nats_server.url) as bus,
    ):
        second = Directory(30.0)
        await learn(bus, second, sync_timeout=5.0)
    assert asked == [0, 1, 2]
    debug = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.DEBUG and r.name == "volta.node.directory"
    ]
    assert debug == ["no directory to sync from: next_offset: does not advance past 2"]
    # What came before the lie is kept; the page that lied is not.
    assert ids(second) == [fake(0)["id"], fake(1)["id"]]


async def test_a_sync_stops_where_the_next_offset_goes_back(nats_server: NatsServer) -> None:
    def answer(offset: int) -> Page:
        return {"agents": [fake(offset)], "next_offset": 1 if offset == 0 else 0}

    async with fake_directory(nats_server.url, answer) as asked, open_bus(nats_server.url) as bus:
        second = Directory(30.0)
        await learn(bus, second, sync_timeout=5.0)
    assert asked == [0, 1]
    assert ids(second) == [fake(0)["id"]]


async def test_a_sync_from_an_endless_directory_ends_with_what_came_in(
    nats_server: NatsServer,
) -> None:
    async with fake_directory(nats_server.url, endless) as asked, open_bus(nats_server.url) as bus:
        second = Directory(30.0)
        changes = await learn(bus, second, sync_timeout=0.5)
    learned = ids(second)
    assert learned
    # In order from the start; the request in flight when time ran out brought nothing.
    assert learned == [fake(n)["id"] for n in range(len(learned))]
    assert len(asked) - 1 <= len(learned) <= len(asked)
    assert [c.agent for c in changes] == learned


@pytest.mark.parametrize(
    "reply",
    [
        {"agents": [], "error": {"code": "agent_error", "message": "no"}},
        {"agents": "everyone"},
        {"agents": [fake(0)], "next_offset": "soon"},
    ],
)
async def test_a_sync_from_a_directory_that_answers_nonsense_learns_nothing(
    nats_server: NatsServer, reply: Page
) -> None:
    async with (
        fake_directory(nats_server.url, lambda _offset: reply) as asked,
        open_bus(nats_server.url) as bus,
    ):
        second = Directory(30.0)
        assert await learn(bus, second) == []
    assert (asked, len(second)) == ([0], 0)


async def test_a_sync_with_no_directory_or_a_silent_one_learns_nothing(
    nats_server: NatsServer,
) -> None:
    async with open_bus(nats_server.url) as bus:
        second = Directory(30.0)
        assert await learn(bus, second) == []  # nobody answers mcp.list_agents
        async with fake_directory(nats_server.url, lambda _offset: None) as asked:
            assert await learn(bus, second, sync_timeout=0.3) == []
    assert (asked, len(second)) == ([0], 0)


@pytest.mark.slow
async def test_a_sync_waits_for_a_slow_page_as_long_as_sync_timeout_allows(
    nats_server: NatsServer,
) -> None:
    """Each request has all of sync_timeout, not the bus's 5 s default."""
    last_page: Page = {"agents": [fake(0)], "next_offset": None}
    async with (
        fake_directory(nats_server.url, lambda _offset: last_page, delay=6.0),
        open_bus(nats_server.url) as bus,
    ):
        second = Directory(30.0)
        events: list[PresenceChange | IdentityClash] = []
        service = DirectoryService(
            second, bus, events.append, spec=DirectorySpec(sync_timeout=20.0)
        )
        with trio.fail_after(25):
            await service.sync()
    assert ids(second) == [fake(0)["id"]]


async def test_a_node_starts_past_a_lying_directory_and_keeps_what_it_learned(
    nats_server: NatsServer,
) -> None:
    async with fake_directory(nats_server.url, stuck_at(1)):
        spec = node_spec(nats_server.url, [agent("alpha")])
        async with running_node(spec) as node:
            assert node.directory.get(fake(0)["id"]) is not None
            assert sorted(node.agents) == ["alpha"]


async def test_a_node_knows_the_agents_of_a_node_that_runs_already_once_started(
    nats_server: NatsServer,
) -> None:
    """Their heartbeats are 30 s apart: only the sync can have told it."""
    slow: dict[str, Any] = {"heartbeat_interval": 30.0}
    first = node_spec(nats_server.url, [agent("alpha", ["echo"], **slow)], name="first")
    second = node_spec(nats_server.url, [agent("beta", **slow)], name="second")
    async with running_node(first), running_node(second) as node:
        alpha = node.directory.get("alpha")
        assert alpha is not None
        assert (alpha.status, alpha.capabilities) == (Presence.ONLINE, ("echo",))
        assert node.directory.providers("echo") == ["alpha"]


async def test_by_default_a_silent_directory_is_waited_for_one_second(
    nats_server: NatsServer,
) -> None:
    """The default ``sync_timeout`` (1 s): long enough for a peer on loopback, short
    enough not to hold up a node's start."""
    async with (
        open_bus(nats_server.url) as bus,
        fake_directory(nats_server.url, lambda _offset: None) as asked,
    ):
        started = trio.current_time()
        assert await learn(bus, Directory(30.0)) == []
        waited = trio.current_time() - started
    assert asked == [0]
    assert 0.9 <= waited < 1.8, f"waited {waited:.2f} s for a silent directory"
