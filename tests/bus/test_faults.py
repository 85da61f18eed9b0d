"""Fault injection: kill -9 the server, floods, slow consumers, giving up.

Rules: loopback only, one server per test (the tests kill it), real time,
every wait bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.lowlevel

from volta.bus import (
    Bus,
    BusClosed,
    BusOptions,
    ConnectionEventKind,
    NatsServer,
    NoResponders,
    Overflow,
    ReconnectPolicy,
    RequestTimeout,
    open_bus,
)

from .conftest import FAST_RECONNECT, next_event, stalled


async def test_kill_9_during_traffic_then_restart(nats_server: NatsServer) -> None:
    received: list[int] = []
    async with (
        open_bus(nats_server.url, reconnect=FAST_RECONNECT) as publisher,
        open_bus(nats_server.url, reconnect=FAST_RECONNECT) as consumer,
        consumer.watch_events() as events,
        consumer.subscribe("ticks") as ticks,
        trio.open_nursery() as nursery,
    ):
        await consumer.flush()

        async def collect() -> None:
            async for delivery in ticks:
                received.append(int(delivery.data))

        async def publish_forever() -> None:
            n = 0
            while True:
                await publisher.publish("ticks", str(n).encode())
                n += 1
                await trio.sleep(0.001)

        nursery.start_soon(collect)
        nursery.start_soon(publish_forever)
        with trio.fail_after(5):
            while len(received) < 100:
                await trio.sleep(0.01)

        await nats_server.kill()
        with trio.fail_after(10):
            disconnected = await next_event(events, ConnectionEventKind.DISCONNECTED)
        assert not consumer.connected
        before_restart = len(received)

        await nats_server.restart()
        with trio.fail_after(10):
            reconnected = await next_event(events, ConnectionEventKind.RECONNECTED)
        assert disconnected.at < reconnected.at
        assert consumer.connected

        # The same subscription delivers again, without being re-created.
        with trio.fail_after(10):
            while len(received) < before_restart + 100:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert consumer.statistics().reconnects == 1
    assert received == sorted(received)  # order kept even across the outage


async def test_requests_work_again_after_a_restart(nats_server: NatsServer) -> None:
    async with (
        open_bus(nats_server.url, reconnect=FAST_RECONNECT) as bus,
        bus.watch_events() as events,
        trio.open_nursery() as nursery,
    ):

        async def echo(task_status: trio.TaskStatus[None]) -> None:
            async with bus.subscribe("echo") as requests:
                await bus.flush()
                task_status.started()
                async for request in requests:
                    await bus.respond(request, request.data)

        await nursery.start(echo)
        assert (await bus.request("echo", b"before", timeout=5)).data == b"before"
        await nats_server.kill()
        await nats_server.restart()
        with trio.fail_after(10):
            await next_event(events, ConnectionEventKind.RECONNECTED)
        assert (await bus.request("echo", b"after", timeout=5)).data == b"after"
        nursery.cancel_scope.cancel()


async def test_publishes_during_an_outage_wait_and_go_out_after_reconnect(
    nats_server: NatsServer,
) -> None:
    # One connection publishes and subscribes: on reconnect nats-py replays the
    # subscription before our pump resumes, so nothing can race past it.
    async with (
        open_bus(nats_server.url, reconnect=FAST_RECONNECT) as bus,
        bus.watch_events() as events,
        bus.subscribe("held") as held,
    ):
        await bus.flush()
        await nats_server.kill()
        with trio.fail_after(10):
            await next_event(events, ConnectionEventKind.DISCONNECTED)
        for n in range(20):  # queued in the outbox, not lost in a dead socket
            await bus.publish("held", str(n).encode())
        assert bus.statistics().queued_bytes > 0
        await nats_server.restart()
        with trio.fail_after(10):
            await next_event(events, ConnectionEventKind.RECONNECTED)
            got = [int((await held.receive()).data) for _ in range(20)]
    assert got == list(range(20))


async def test_giving_up_closes_the_bus_and_ends_iteration(nats_server: NatsServer) -> None:
    policy = ReconnectPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=2)
    async with (
        open_bus(nats_server.url, reconnect=policy) as bus,
        bus.watch_events() as events,
        bus.subscribe("anything") as subscription,
    ):
        await nats_server.kill()
        with trio.fail_after(10):
            closed = await next_event(events, ConnectionEventKind.CLOSED)
            with pytest.raises(BusClosed, match="the bus is closed"):
                await subscription.receive()
        assert "gave up" in closed.detail
        assert bus.closed
        with pytest.raises(BusClosed):
            await bus.publish("x", b"y")


@pytest.mark.parametrize("overflow", [Overflow.DROP_NEWEST, Overflow.DROP_OLDEST])
async def test_a_slow_consumer_does_not_grow_memory(
    nats_server: NatsServer, overflow: Overflow
) -> None:
    flood = 5000
    async with (
        open_bus(nats_server.url, report_interval=0.2) as bus,
        bus.watch_events() as events,
        bus.subscribe("flood", max_messages=100, overflow=overflow) as slow,
    ):
        await bus.flush()
        for n in range(flood):
            await bus.publish("flood", n.to_bytes(4, "big") + b"x" * 124)
        await bus.flush()
        with trio.fail_after(10):
            while slow.statistics().pending + slow.statistics().dropped < flood:
                await trio.sleep(0.01)
        stats = slow.statistics()
        assert stats.pending == 100
        assert stats.pending_bytes == 100 * 128
        assert stats.dropped == flood - 100
        # The drops are counted per subject and reported with the count: in one summary,
        # or (on a busy machine, the flood arriving over more than one report interval)
        # in several that add up.
        reported = 0
        with trio.fail_after(5):
            event = await next_event(events, ConnectionEventKind.SLOW_CONSUMER)
            while reported < flood - 100:
                summary = await next_event(events, ConnectionEventKind.SLOW_CONSUMER)
                said = re.match(
                    r"slow consumer on flood: dropped ([0-9,]+) messages since the last report",
                    summary.detail,
                )
                assert said is not None, summary.detail
                reported += int(said[1].replace(",", ""))
        assert event.detail == "flood: buffer full"
        assert reported == flood - 100
        first = int.from_bytes((await slow.receive()).data[:4], "big")
    # DROP_NEWEST keeps the first messages; DROP_OLDEST keeps the last ones.
    assert first == (0 if overflow is Overflow.DROP_NEWEST else flood - 100)


async def test_byte_limit_bounds_the_buffer_too(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus, bus.subscribe("big", max_bytes=10_000) as slow:
        await bus.flush()
        for _ in range(50):
            await bus.publish("big", b"x" * 1000)
        await bus.flush()
        with trio.fail_after(10):
            while slow.statistics().pending + slow.statistics().dropped < 50:
                await trio.sleep(0.01)
        assert slow.statistics().pending_bytes <= 10_000
        assert slow.statistics().pending == 10


async def test_flood_of_publishes_applies_backpressure(nats_server: NatsServer) -> None:
    """With a tiny outbox, publishers wait instead of queueing without bound."""
    async with open_bus(nats_server.url, outbox_max_bytes=4096) as bus:
        peak = 0

        async def watch(bus: Bus) -> None:
            nonlocal peak
            while True:
                peak = max(peak, bus.statistics().queued_bytes)
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, bus)
            for _ in range(20_000):
                await bus.publish("sink", b"y" * 100)
            await bus.flush()
            nursery.cancel_scope.cancel()
    assert 0 < peak <= 4096 + 100


async def test_a_flush_during_an_outage_times_out(nats_server: NatsServer) -> None:
    async with (
        open_bus(nats_server.url, reconnect=FAST_RECONNECT) as bus,
        bus.watch_events() as events,
    ):
        await nats_server.kill()
        with trio.fail_after(10):
            await next_event(events, ConnectionEventKind.DISCONNECTED)
        start = trio.current_time()
        with trio.fail_after(5), pytest.raises(RequestTimeout, match=r"'\(flush\)' within 0\.2 s"):
            await bus.flush(timeout=0.2)
        assert trio.current_time() - start >= 0.2


async def test_a_flush_the_server_never_confirms_times_out_and_the_bus_recovers(
    nats_server: NatsServer,
) -> None:
    """A stalled server never answers the PING; once it reads again, the bus delivers.

    (nats-py, timing out a flush itself, cancels the future of its PONG; the late
    PONG then kills nats-py's reader with InvalidStateError, and the connection
    stays deaf until the pings notice, 20-30 s later.)
    """
    received: list[bytes] = []
    async with open_bus(nats_server.url) as bus, bus.subscribe("after") as after:
        await bus.flush()
        async with stalled(nats_server):
            with trio.fail_after(5), pytest.raises(RequestTimeout, match=r"'\(flush\)'"):
                await bus.flush(timeout=0.3)
        await bus.publish("after", b"still here")
        with trio.move_on_after(2):
            received.append((await after.receive()).data)
    assert received == [b"still here"], "the connection went deaf after a flush timed out"


async def test_what_waits_for_a_reconnect_fails_at_once_when_the_bus_gives_up(
    nats_server: NatsServer,
) -> None:
    """A flush, a request and a subscribe held by an outage end with BusClosed.

    Their own timeouts are long: they must end when the bus gives up, not then.
    """
    policy = ReconnectPolicy(initial_delay=0.2, max_delay=0.2, jitter=0, max_attempts=2)
    ended: dict[str, Exception] = {}
    async with (
        open_bus(nats_server.url, reconnect=policy) as bus,
        bus.watch_events() as events,
    ):
        await nats_server.kill()
        with trio.fail_after(10):
            await next_event(events, ConnectionEventKind.DISCONNECTED)

        async def flush() -> None:
            await bus.flush(timeout=60)

        async def request() -> None:
            await bus.request("anyone", b"?", timeout=60)

        async def subscribe() -> None:
            async with bus.subscribe("later"):
                pass  # pragma: no cover - never subscribed

        async def run(name: str, operation: Callable[[], Awaitable[None]]) -> None:
            try:
                await operation()
            except Exception as error:
                ended[name] = error

        with trio.move_on_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, "flush", flush)
                nursery.start_soon(run, "request", request)
                nursery.start_soon(run, "subscribe", subscribe)
        waiting = {"flush", "request", "subscribe"} - set(ended)
        assert not waiting, f"still waiting 5 s after the bus gave up: {sorted(waiting)}"
        assert {name: type(error) for name, error in ended.items()} == dict.fromkeys(
            ended, BusClosed
        )
    assert bus.closed


async def test_a_subscribe_abandoned_during_an_outage_leaves_nothing_behind(
    nats_server: NatsServer,
) -> None:
    """Cancelled while it waits for the reconnect, it is undone once it exists."""
    async with (
        open_bus(nats_server.url, reconnect=FAST_RECONNECT) as bus,
        bus.watch_events() as events,
    ):
        await nats_server.kill()
        with trio.fail_after(10):
            await next_event(events, ConnectionEventKind.DISCONNECTED)
        with trio.move_on_after(0.1) as waited:
            async with bus.subscribe("abandoned"):
                pass  # pragma: no cover - the outage holds it
        assert waited.cancelled_caught
        await nats_server.restart()
        with trio.fail_after(10):
            await next_event(events, ConnectionEventKind.RECONNECTED)
            await bus.flush()  # queued behind the abandoned subscribe and its undoing
        assert bus.statistics().subscriptions == 0
        try:
            await bus.request("abandoned", b"?", timeout=1)
        except NoResponders:
            pass
        except RequestTimeout:
            pytest.fail("the abandoned subscription is still on the server")
        else:  # pragma: no cover
            pytest.fail("someone answered on 'abandoned'")


async def test_a_silent_partition_is_noticed_in_seconds_by_default(
    nats_server: NatsServer,
) -> None:
    """A server that answers nothing (SIGSTOP): the default pings notice within 8 s."""
    options = BusOptions(servers=(nats_server.url,), reconnect=FAST_RECONNECT)
    assert options.ping_interval * (options.max_outstanding_pings + 2) <= 8
    async with open_bus(options) as bus, bus.watch_events() as events:
        await bus.flush()
        async with stalled(nats_server):
            start = trio.current_time()
            with trio.fail_after(12):
                await next_event(events, ConnectionEventKind.DISCONNECTED)
            noticed = trio.current_time() - start
    assert noticed <= 9, f"a silent partition took {noticed:.1f} s to notice"
