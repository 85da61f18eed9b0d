"""The batching asyncio loop (bus/_loop.py) keeps asyncio's semantics.

Rules: no network; asyncio timers on trio-asyncio follow trio's clock, so the
timing tests run on ``autojump_clock`` and assert exact virtual times.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio
import trio.testing
import trio_asyncio

from volta.bus._loop import BatchingEventLoop, asyncio_loop, is_batching


async def test_open_bus_loops_are_batching() -> None:
    async with asyncio_loop():
        assert is_batching(trio_asyncio.current_loop.get())


async def test_an_application_loop_is_left_alone() -> None:
    async with trio_asyncio.open_loop() as loop, asyncio_loop():
        assert trio_asyncio.current_loop.get() is loop
        assert not is_batching(loop)


@pytest.mark.parametrize(("settle", "yield_between"), [(False, False), (True, True)])
async def test_switching_keeps_fifo_order_of_queued_callbacks(
    settle: bool, yield_between: bool
) -> None:
    async with trio_asyncio.open_loop() as loop:
        if settle:
            await trio.sleep(0.01)  # the stock loop task is parked when we switch
        order: list[int] = []
        done = trio.Event()
        for n in range(50):
            loop.call_soon(order.append, n)
        if yield_between:
            await trio.lowlevel.checkpoint()  # the stock loop may run some first
        loop.__class__ = BatchingEventLoop
        for n in range(50, 100):
            loop.call_soon(order.append, n)
        loop.call_soon(done.set)
        with trio.fail_after(2):
            await done.wait()
    assert order == list(range(100))


async def test_callbacks_queued_by_callbacks_stay_in_order() -> None:
    order: list[str] = []
    async with asyncio_loop():
        loop = trio_asyncio.current_loop.get()
        done = trio.Event()

        def first(n: int) -> None:
            order.append(f"first-{n}")
            loop.call_soon(order.append, f"then-{n}")

        for n in range(200):  # more than one batch
            loop.call_soon(first, n)
        loop.call_soon(lambda: loop.call_soon(done.set))
        with trio.fail_after(2):
            await done.wait()
    firsts = [item for item in order if item.startswith("first")]
    thens = [item for item in order if item.startswith("then")]
    assert firsts == [f"first-{n}" for n in range(200)]
    assert thens == [f"then-{n}" for n in range(200)]
    assert order.index("then-0") > order.index("first-199")


async def test_timers_fire_on_time_in_order_and_cancelled_ones_never(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fired: list[tuple[str, float]] = []
    async with asyncio_loop():
        loop = trio_asyncio.current_loop.get()
        start = loop.time()
        for name, delay in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("x", 1.5)]:
            handle = loop.call_later(delay, lambda n=name: fired.append((n, loop.time() - start)))
            if name == "x":
                handle.cancel()
        await trio.sleep(5)
    assert fired == [("a", 1.0), ("b", 2.0), ("c", 3.0)]


async def test_a_sooner_timer_wakes_a_loop_sleeping_towards_a_later_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with asyncio_loop():
        loop = trio_asyncio.current_loop.get()
        start = trio.current_time()
        woke: list[float] = []
        loop.call_later(100.0, lambda: None)
        await trio.sleep(1)  # the loop now sleeps towards t=100
        loop.call_later(2.0, lambda: woke.append(trio.current_time() - start))
        await trio.sleep(10)
    assert woke == [3.0]


async def test_asyncio_coroutines_wait_for_and_cancellation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow() -> str:
        await asyncio.sleep(10)
        return "late"

    async def scenario() -> tuple[str, bool, str]:
        try:
            await asyncio.wait_for(slow(), 1.0)
            timed_out = "no"
        except TimeoutError:
            timed_out = "yes"
        task = asyncio.ensure_future(slow())
        await asyncio.sleep(0.5)
        task.cancel()
        try:
            await task
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        return timed_out, cancelled, await asyncio.wait_for(asyncio.sleep(0.1, "ok"), 1)

    async with asyncio_loop():
        start = trio.current_time()
        result = await trio_asyncio.aio_as_trio(scenario)()
        elapsed = trio.current_time() - start
    assert result == ("yes", True, "ok")
    assert elapsed == pytest.approx(1.6)


async def test_call_soon_threadsafe_from_another_thread_in_order() -> None:
    received: list[int] = []
    async with asyncio_loop():
        loop = trio_asyncio.current_loop.get()
        done = trio.Event()

        def producer() -> None:
            for n in range(500):
                loop.call_soon_threadsafe(received.append, n)
            loop.call_soon_threadsafe(done.set)

        thread = threading.Thread(target=producer)
        thread.start()
        with trio.fail_after(5):
            await done.wait()
        thread.join()
    assert received == list(range(500))


async def test_an_exception_in_a_callback_is_reported_and_the_loop_goes_on() -> None:
    seen: list[object] = []
    async with asyncio_loop():
        loop = trio_asyncio.current_loop.get()
        loop.set_exception_handler(lambda _loop, context: seen.append(context["exception"]))
        done = trio.Event()

        def boom() -> None:
            raise ValueError("in a callback")

        loop.call_soon(boom)
        loop.call_soon(done.set)
        with trio.fail_after(2):
            await done.wait()
    assert len(seen) == 1
    assert isinstance(seen[0], ValueError)


async def test_leaving_with_pending_asyncio_work_does_not_hang() -> None:
    with trio.fail_after(5):
        async with asyncio_loop():
            loop = trio_asyncio.current_loop.get()
            pending = asyncio.ensure_future(asyncio.sleep(3600), loop=loop)
            loop.call_later(3600, lambda: None)
            await trio.sleep(0.01)
            assert not pending.done()
