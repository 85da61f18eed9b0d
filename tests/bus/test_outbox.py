"""The outbox through an outage: held, then delivered in order, none lost, none twice.

Rules: loopback only, one server per test (the tests kill it), real time, every
wait bounded by ``trio.fail_after``; "nothing more arrived" is shown by a sentinel
published last, never by a sleep.

One subscriber on the publishing bus itself: on reconnect nats-py replays the
subscription before anything queued goes out, so the subscriber cannot miss
the first messages whatever the timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Awaitable, Callable

import trio
import trio_asyncio

from volta.bus import (
    Bus,
    ConnectionEvent,
    ConnectionEventKind,
    NatsServer,
    Subscription,
    open_bus,
)

from .conftest import FAST_RECONNECT, next_event, stalled

SENTINEL = b"end"


async def run_in_a_thread_of_its_own(
    scenario: Callable[[], Awaitable[None]], timeout: float
) -> None:
    """``trio.run(scenario)`` in a daemon thread; fail if it has not ended after ``timeout``.

    For hangs inside the bus's shielded teardown, which no cancel scope can end:
    the thread is abandoned and the test fails now instead of hanging the run.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            trio.run(scenario)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, name="scenario", daemon=True)
    thread.start()
    with trio.move_on_after(timeout):
        while thread.is_alive():
            await trio.sleep(0.01)
    assert not thread.is_alive(), f"still running after {timeout} s (abandoned)"
    if errors:
        raise errors[0]


async def publish_spaced(bus: Bus, size: int, sent: list[int]) -> None:
    """Publish forever, spaced past the write-through spacing (as a quiet agent would)."""
    while True:
        await bus.publish("stalled", b"x" * size)
        sent[0] += 1
        await trio.sleep(0.0002)


async def receive_until_sentinel(subscription: Subscription) -> list[int]:
    """Everything before the sentinel, as numbers (the sentinel is published last)."""
    got: list[int] = []
    async for delivery in subscription:
        if delivery.data == SENTINEL:
            return got
        got.append(int(delivery.data))
    raise AssertionError("the subscription ended before the sentinel")  # pragma: no cover


async def restart_and_receive(
    server: NatsServer,
    bus: Bus,
    events: trio.MemoryReceiveChannel[ConnectionEvent],
    numbered: Subscription,
) -> list[int]:
    """End the outage: restart the server, wait for the bus to reconnect, then take
    everything that arrives before a sentinel published after it."""
    await server.restart()
    with trio.fail_after(10):
        await next_event(events, ConnectionEventKind.RECONNECTED)
    await bus.publish("numbered", SENTINEL)
    with trio.fail_after(10):
        return await receive_until_sentinel(numbered)


async def publish_numbered(bus: Bus, numbers: range) -> None:
    """Even numbers without headers (run writes), odd ones with (nats-py's publish)."""
    for n in numbers:
        headers = {"n": str(n)} if n % 2 else None
        await bus.publish("numbered", str(n).encode(), headers=headers)


async def test_an_outage_is_backpressure_not_loss(nats_server: NatsServer) -> None:
    """Publishes issued while the client reconnects all arrive, in order, once each."""
    count = 200
    async with (
        open_bus(nats_server.url, reconnect=FAST_RECONNECT) as bus,
        bus.watch_events() as events,
        bus.subscribe("numbered") as numbered,
    ):
        await bus.flush()
        await nats_server.kill()
        with trio.fail_after(10):
            await next_event(events, ConnectionEventKind.DISCONNECTED)
        assert not bus.connected
        await publish_numbered(bus, range(count))
        # A trip through the asyncio loop, queued behind the pump's wake-up.
        await trio_asyncio.aio_as_trio(asyncio.sleep)(0)
        held = bus.statistics().queued_bytes
        assert held == sum(len(str(n)) for n in range(count)), "the outage should hold them"

        got = await restart_and_receive(nats_server, bus, events, numbered)
        stats = bus.statistics()
    assert got == list(range(count)), "lost, duplicated or reordered across the outage"
    assert stats.queued_bytes == 0
    assert stats.publish_failed == 0
    assert stats.published == count + 1


async def test_a_publish_refused_while_reconnecting_is_put_back_and_sent_later(
    nats_server: NatsServer,
) -> None:
    """nats-py refuses a publish once its reconnect buffer is full; the pump keeps it.

    The pump can only meet that refusal in the moment between nats-py noticing the
    dead socket and its disconnected callback, too short to hit on purpose with a
    real kill. So the test makes that moment last: during a real outage it tells
    the pump the link is up again (``online``), as it would still believe then.
    A reconnect buffer of one byte makes nats-py refuse every publish with headers;
    those without go into nats-py's own buffer, which it sends on reconnect.
    """
    count = 40
    async with (
        open_bus(nats_server.url, reconnect=FAST_RECONNECT, reconnect_buffer_bytes=1) as bus,
        bus.watch_events() as events,
        bus.subscribe("numbered") as numbered,
    ):
        await bus.flush()
        await nats_server.kill()
        with trio.fail_after(10):
            await next_event(events, ConnectionEventKind.DISCONNECTED)
        await publish_numbered(bus, range(count))
        online = bus._monitor.online
        assert not online.is_set()
        online.set()  # what the pump would believe before nats-py's disconnected callback
        with trio.fail_after(5):
            while online.is_set():  # the pump clears it when nats-py refuses
                await trio.sleep(0.01)
        # 0 went into nats-py's buffer (no headers); 1 was refused and put back
        # in front of the others.
        held = bus.statistics().queued_bytes
        assert held == sum(len(str(n)) for n in range(1, count)), "the refused publish is lost"

        got = await restart_and_receive(nats_server, bus, events, numbered)
        stats = bus.statistics()
    assert got == list(range(count)), "a publish refused while reconnecting was not resent"
    assert stats.publish_failed == 0
    assert stats.queued_bytes == 0


async def test_a_stalled_server_makes_publishers_wait(nats_server: NatsServer) -> None:
    """A server that stops reading pushes back on publishers; memory stays bounded.

    Publishes spaced out like a quiet agent's (each could be written straight to
    the socket) must not pile up in asyncio's write buffer behind the server's
    back: once the socket stops taking them, they queue, and at
    ``outbox_max_bytes`` publish waits.
    """
    limit = 1 << 20
    size = 64 * 1024
    sent = [0]
    async with (
        open_bus(nats_server.url, outbox_max_bytes=limit, reconnect_buffer_bytes=limit) as bus,
        trio.open_nursery() as nursery,
    ):
        await bus.flush()
        async with stalled(nats_server):
            nursery.start_soon(publish_spaced, bus, size, sent)
            with trio.fail_after(20):
                while bus.statistics().queued_bytes < limit:
                    assert sent[0] * size < 64 * limit, (
                        f"{sent[0] * size} bytes went into a stalled connection and publish "
                        "never waited: no backpressure"
                    )
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()


async def test_closing_during_an_outage_ends_even_with_the_pump_inside_nats_py(
    nats_server: NatsServer,
) -> None:
    """Leaving ``open_bus`` while the server is down ends within ``close_timeout``.

    A stall with more than ``reconnect_buffer_bytes`` queued leaves the pump
    waiting in nats-py's forced flush, for a flusher that the outage then
    cancels. Two things kept the shielded teardown of ``open_bus`` open for good
    from there (hence a thread of its own): nats-py's close raised
    ConnectionResetError (it writes what it holds to the dead socket), which
    skipped cancelling the pump; and nats-py swallows the cancellation of that
    forced flush, so the pump must end by itself once the bus is closed.
    """
    server_pid = nats_server.pid  # the nats-server itself, not its watchdog
    assert server_pid is not None
    pid, url = server_pid, nats_server.url
    limit = 1 << 20
    close_timeout = 1.0
    left_after: list[float] = []
    forced_flushes: list[int] = []

    async def scenario() -> None:
        async with (
            open_bus(
                url,
                reconnect=FAST_RECONNECT,
                outbox_max_bytes=limit,
                reconnect_buffer_bytes=limit,
                close_timeout=close_timeout,
            ) as bus,
            bus.watch_events() as events,
        ):
            await bus.flush()
            os.kill(pid, signal.SIGSTOP)
            async with trio.open_nursery() as nursery:
                # Small publishes, one per pump run: nats-py's flusher is stuck in
                # the socket's drain (holding a flush nobody waits for) well before
                # the pump's writes pass reconnect_buffer_bytes and force a flush.
                nursery.start_soon(publish_spaced, bus, 16 * 1024, [0])
                with trio.fail_after(5):
                    while bus.statistics().queued_bytes < limit:  # the pump waits in nats-py
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            flush_queue = bus._client._flush_queue  # flushes nats-py's flusher has not taken
            assert flush_queue is not None
            forced_flushes.append(flush_queue.qsize())
            os.kill(pid, signal.SIGKILL)
            with trio.fail_after(5):
                await next_event(events, ConnectionEventKind.DISCONNECTED)
            start = trio.current_time()
        left_after.append(trio.current_time() - start)

    await run_in_a_thread_of_its_own(scenario, timeout=15)
    assert forced_flushes[0] > 0, "the pump was not left waiting in nats-py (the case under test)"
    assert left_after[0] < close_timeout + 1, f"open_bus took {left_after[0]:.1f} s to close"
