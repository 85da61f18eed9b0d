"""The announcer: when an agent says it is there, and what "ready" means after a restart.

Real nats-server, real time, every wait bounded. Announces are watched on the
node's own connection, subscribed after the start-up announces, so only the
announces made later are counted (as in ``test_faults.py``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from volta.actors import AskFailed, SupervisionPolicy
from volta.bus import ConnectionEvent, ConnectionEventKind, NatsServer, open_bus
from volta.protocol import AGENT_ANNOUNCE
from volta.supervisor import Backoff, EventKind, SupervisorEvent

from ..mesh import (
    FAST_RECONNECT,
    agent,
    client_context,
    node_spec,
    running_node,
    wait_until,
)
from .test_agents import Fails


async def until_event(
    events: trio.MemoryReceiveChannel[ConnectionEvent], kind: ConnectionEventKind
) -> None:
    with trio.fail_after(10):
        async for event in events:
            if event.kind is kind:
                return


async def test_exactly_one_announce_per_reconnect_and_none_on_other_connection_events(
    nats_server: NatsServer,
) -> None:
    spec = node_spec(nats_server.url, [agent("alpha")])
    async with (
        open_bus(nats_server.url, reconnect=FAST_RECONNECT) as bus,
        running_node(spec, bus=bus),
        bus.subscribe(AGENT_ANNOUNCE) as announces,
        bus.watch_events() as events,
        # A subscription that cannot keep up: a slow_consumer event on the connection.
        bus.subscribe("test.slow", max_messages=1) as slow,
    ):
        await bus.flush()
        # A malformed message to the agent: a malformed event on the connection.
        reply = await bus.request("agent.alpha.message", b"{broken", timeout=5)
        assert json.loads(reply.data)["error"]["code"] == "bad_request"
        await until_event(events, ConnectionEventKind.MALFORMED)
        for _ in range(3):
            await bus.publish("test.slow", b"x")
        await until_event(events, ConnectionEventKind.SLOW_CONSUMER)  # at the first drop
        await wait_until(lambda: slow.statistics().dropped == 2)  # the third may come later

        for reconnect in (1, 2):
            # The announcer sees the events above (and the errors of the reconnect
            # attempts) before this reconnect: its announce for the reconnect comes
            # after any announce it would have made for them.
            await nats_server.kill()
            await until_event(events, ConnectionEventKind.DISCONNECTED)
            await nats_server.restart()
            await until_event(events, ConnectionEventKind.RECONNECTED)
            with trio.fail_after(10):
                announce = json.loads((await announces.receive()).data)
            assert announce["id"] == "alpha"
            await bus.flush()
            assert announces.statistics().pending == 0, f"more than one announce ({reconnect})"


@contextmanager
def frozen(server: NatsServer) -> Iterator[None]:
    """The server process stopped (SIGSTOP): it reads nothing and answers nothing."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def test_a_restarted_inbox_is_ready_only_once_the_server_has_its_subscription(
    nats_server: NatsServer,
) -> None:
    """After a restart nobody flushes for the inbox but itself: until the server has its
    subscription (here: a frozen server), the supervisor must not hear "started"."""
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0)
    policy = SupervisionPolicy(max_restarts=10, period=60, backoff=backoff)
    spec = node_spec(nats_server.url, [agent("flaky", handler=Fails(), supervision=policy)])
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        node.events.watch(1000) as stream,
    ):
        supervisor = node.agents["flaky"].supervisor
        assert supervisor is not None
        context = client_context(bus)
        with pytest.raises(AskFailed, match="AgentFault"):
            await context.ask("flaky", "crash")
        started_while_frozen = False
        with frozen(nats_server):
            assert supervisor.statistics().waiting == 1, "the inbox restarted before the freeze"
            # The backoff ends: the supervisor starts the inbox again.
            with trio.fail_after(5):
                while supervisor.statistics().waiting:
                    await trio.sleep(0.01)
            with trio.move_on_after(1.0):
                async for event in stream:
                    if isinstance(event, SupervisorEvent) and event.kind is EventKind.START:
                        started_while_frozen = True
                        break
        assert not started_while_frozen, "the inbox was ready before the server had its SUB"
        with trio.fail_after(10):
            async for event in stream:
                if isinstance(event, SupervisorEvent) and event.kind is EventKind.START:
                    assert event.child == "inbox"
                    break
        # Ready means reachable: at once, from another connection.
        answer = await context.ask("flaky", "hello", timeout=5)
    assert answer.message == "re: hello"


async def test_each_announce_is_logged_naming_the_agent(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "volta.actors.announcer")
    spec = node_spec(nats_server.url, [agent("alpha"), agent("beta")])
    async with running_node(spec):
        pass
    lines = sorted(r.getMessage() for r in caplog.records if r.name == "volta.actors.announcer")
    assert lines == ["agent alpha announced", "agent beta announced"]
