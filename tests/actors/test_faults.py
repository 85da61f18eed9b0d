"""Fault injection on running agents: crash loops, dead agents, a dead server."""

from __future__ import annotations

import itertools
import json

import attrs
import pytest
import trio
import trio_asyncio

from volta.actors import AskFailed
from volta.bus import BusClosed, BusOptions, ConnectionEventKind, NatsServer, open_bus
from volta.node import Node
from volta.protocol import AGENT_ANNOUNCE, Presence, agent_status
from volta.supervisor import EventKind, SupervisorEvent

from ..mesh import (
    FAST_RECONNECT,
    agent,
    client_context,
    node_spec,
    running_node,
    seed_agents,
    wait_until,
)
from .test_agents import Fails, Hangs


async def test_crash_the_inbox_100_times_heartbeats_never_stop(nats_server: NatsServer) -> None:
    """100 inbox crashes spread over ~40 heartbeat intervals: only the inbox restarts
    (one_for_one); the heartbeat never does, and never misses a beat."""
    interval = 0.05
    beats: list[float] = []
    spec = node_spec(
        nats_server.url, [agent("victim", handler=Fails(), heartbeat_interval=interval)]
    )
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe(agent_status("victim")) as statuses,
        node.events.watch(10_000) as events,
        trio.open_nursery() as nursery,
    ):

        async def record_beats() -> None:
            async for _ in statuses:
                beats.append(trio.current_time())

        nursery.start_soon(record_beats)
        context = client_context(bus)
        starts: list[str] = []
        start = trio.current_time()
        for _ in range(100):
            with pytest.raises(AskFailed, match="AgentFault"):
                await context.ask("victim", "crash")
            with trio.fail_after(5):
                async for event in events:
                    if isinstance(event, SupervisorEvent) and event.kind is EventKind.START:
                        starts.append(event.child or "")
                        if event.child == "inbox":
                            break
            await trio.sleep(interval / 2.5)  # spread the crashes over many beats
        end = trio.current_time()
        reply = await context.ask("victim", "still there?")
        stats = node.agents["victim"].statistics()
        supervisor = node.agents["victim"].supervisor
        assert supervisor is not None
        child_restarts = dict(supervisor.statistics().child_restarts)
        nursery.cancel_scope.cancel()
    assert end - start >= 30 * interval, "the crashes were not spread over many beats"
    assert starts == ["inbox"] * 100, "a child other than the inbox restarted"
    assert child_restarts == {"inbox": 100, "heartbeat": 0, "announcer": 0}
    assert (stats.handler_errors, stats.restarts) == (100, 100)
    assert reply.message == "re: still there?"
    during = [t for t in beats if start <= t <= end]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert len(during) >= 0.7 * (end - start) / interval, (
        f"{len(during)} beats in {end - start:.2f} s"
    )
    # Real time on a shared machine: a loaded CI box can delay one beat, so a few late
    # beats are allowed; a heartbeat that stalls, or stops between crashes, is not.
    late = [gap for gap in gaps if gap >= 2.5 * interval]
    assert len(late) <= max(2, len(gaps) // 50), f"{len(late)} late beats: {late[:5]}"
    assert max(gaps) < 10 * interval, f"heartbeats stalled for {max(gaps):.3f} s"


async def test_an_agent_that_goes_silent_is_marked_offline(nats_server: NatsServer) -> None:
    """An agent from elsewhere announces, beats once, then dies without a word."""
    interval = 0.1
    # The node's own agent beats every 30 s, so the directory sweeps every 15 s until
    # the ghost's faster interval wakes it up.
    spec = node_spec(
        nats_server.url,
        [agent("watcher", heartbeat_interval=30.0)],
        offline_after_missed=3,
        heartbeat_interval=30.0,
    )
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        status = {"id": "ghost", "capabilities": ["haunt"], "heartbeat_interval": interval}
        await bus.publish(AGENT_ANNOUNCE, json.dumps(status).encode())
        await bus.flush()
        with trio.fail_after(5):
            while (entry := node.directory.get("ghost")) is None:
                await trio.sleep(0.01)
        assert entry.status is Presence.ONLINE
        seen = trio.current_time()
        assert node.directory.providers("haunt") == ["ghost"]
        with trio.fail_after(5):
            while node.directory.get("ghost").status is not Presence.OFFLINE:  # type: ignore[union-attr]
                await trio.sleep(0.005)
        went_offline = trio.current_time() - seen
        listed = {a.id: a.status for a in await client_context(bus).list_agents()}
    # 3 missed intervals, plus at most half an interval of sweep period (and scheduling).
    assert 3 * interval - 0.02 <= went_offline <= 3.5 * interval + 0.15
    assert listed["ghost"] is Presence.OFFLINE
    assert node.directory.providers("haunt") == []


async def test_a_status_may_only_speak_for_its_own_subject(nats_server: NatsServer) -> None:
    """Forged statuses, observed before any real beat could overwrite them (30 s beats)."""
    spec = node_spec(nats_server.url, seed_agents(heartbeat_interval=30.0), heartbeat_interval=30.0)
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        forged = json.dumps({"id": "alpha", "status": "offline"}).encode()
        for subject in ("agent.mallory.status", "agent.x+y.status", "agent.broadcast.status"):
            await bus.publish(subject, forged)
        # A marker through the same subscription, after the forgeries: once the
        # directory has it, it has judged all three.
        await bus.publish(agent_status("marker"), json.dumps({"id": "marker"}).encode())
        await wait_until(lambda: node.directory.get("marker") is not None)
        alpha = node.directory.get("alpha")
        skipped = node.directory_service.malformed if node.directory_service else -1
    assert alpha is not None
    assert alpha.status is Presence.ONLINE
    assert skipped == 3


async def test_kill_9_the_server_under_three_agents(nats_server: NatsServer) -> None:
    spec = node_spec(nats_server.url, seed_agents())
    async with (
        open_bus(nats_server.url, reconnect=FAST_RECONNECT) as bus,
        running_node(spec, bus=bus) as node,
        # On the node's own connection, subscribed after the start-up announces: only
        # announces made after the reconnect can be counted. nats-py replays it before
        # the agents hear of the reconnect, so no re-announce can slip past it.
        bus.subscribe(AGENT_ANNOUNCE) as announces,
        bus.watch_events() as events,
    ):
        await bus.flush()
        context = client_context(bus)
        assert await context.request_capability("uppercase", "before") == "BEFORE"
        assert announces.statistics().pending == 0
        await nats_server.kill()
        with trio.fail_after(10):
            async for event in events:
                if event.kind is ConnectionEventKind.DISCONNECTED:
                    break
        await nats_server.restart()

        # Every agent announces itself again after the reconnect.
        with trio.fail_after(10):
            again: set[str] = set()
            while again != {"alpha", "beta", "gamma"}:
                again.add(json.loads((await announces.receive()).data)["id"])

        # Discovery, messaging and capabilities all work again.
        with trio.fail_after(10):
            while True:
                listed = {a.id: a.status for a in await context.list_agents()}
                if all(listed.get(n) is Presence.ONLINE for n in ("alpha", "beta", "gamma")):
                    break
                await trio.sleep(0.05)
        with trio.fail_after(10):
            assert await context.request_capability("word_count", "a b c d") == 4
            reply = await context.ask("alpha", "after")
        assert reply.message == "after"
        assert all(a.statistics().restarts == 0 for a in node.agents.values())


async def test_messages_in_flight_when_the_agent_stops_are_told_so(nats_server: NatsServer) -> None:
    spec = node_spec(nats_server.url, [agent("busy", handler=Hangs())])
    async with open_bus(nats_server.url) as bus:
        context = client_context(bus)
        failures: list[AskFailed] = []
        async with trio.open_nursery() as nursery:

            async def ask() -> None:
                with pytest.raises(AskFailed) as caught:
                    await context.ask("busy", "take your time", timeout=3)
                failures.append(caught.value)

            async with running_node(spec) as node:
                for _ in range(3):
                    nursery.start_soon(ask)
                await wait_until(lambda: node.agents["busy"].statistics().in_flight == 3)
            # The node stopped in order while they were in flight.
            start = trio.current_time()
        assert trio.current_time() - start < 2, "the asks were not answered, they timed out"
    assert [(f.code, f.message) for f in failures] == [
        ("agent_error", "interrupted: the inbox stopped")
    ] * 3


async def test_a_bus_that_gives_up_ends_the_node(nats_server: NatsServer) -> None:
    """Reconnects limited to 2: the node ends with BusClosed (exit 1 in the CLI), at once,
    instead of restarting children that can never work again."""
    spec = node_spec(
        nats_server.url,
        seed_agents(),
        nats=BusOptions(
            servers=(nats_server.url,),
            reconnect=attrs.evolve(FAST_RECONNECT, max_attempts=2),
        ),
    )
    node = Node(spec)

    async def kill_once_running() -> None:
        await wait_until(
            lambda: all(a.announced for a in node.agents.values()) and len(node.agents) == 3
        )
        await nats_server.kill()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(kill_once_running)
        with trio.fail_after(10), pytest.raises(BusClosed, match="gave up after 2 reconnect"):
            await node.run()
    # A child or two may fail on the closed bus before the node hears it closed; no storm.
    assert node.supervisor is not None
    assert node.supervisor.statistics().restarts <= len(node.agents)


async def test_a_connection_closed_for_good_is_built_again(nats_server: NatsServer) -> None:
    """With reconnects unlimited (the default) a connection can still close for good
    (nats-py gives up after an authorization failure on reconnect): the node builds a
    new one, claims its ids again and its agents answer again."""
    spec = node_spec(nats_server.url, seed_agents())
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        first = node.agents["alpha"]._running_bus
        assert first is not None
        # What nats-py does when it gives up: close its client (the bus hears "closed").
        await trio_asyncio.aio_as_trio(first._client.close)()
        await wait_until(lambda: node.rebuilds == 1, timeout=5)

        def serving_again() -> bool:
            agents = list(node.agents.values())
            return len(agents) == 3 and all(
                a._running_bus not in (None, first) and a.announced for a in agents
            )

        await wait_until(serving_again, timeout=5)
        answer = await client_context(bus).ask("alpha", "still there?", timeout=5)
        again = node.agents["alpha"]._running_bus
    assert answer.message == "still there?"
    assert again is not None
    assert again is not first
