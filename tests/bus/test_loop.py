"""The batching asyncio loop (bus/_loop.py) keeps asyncio's semantics.

Rules: no network; asyncio timers on trio-asyncio follow trio's clock, so the
timing tests run on ``autojump_clock`` and assert exact virtual times.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
import sniffio
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


# trio tasks started from asyncio ---------------------------------------------------


async def test_trio_functions_awaited_from_asyncio_return_and_raise() -> None:
    """Each call starts a trio task from the loop; it knows it runs under trio.

    (sniffio is how anyio-based libraries, httpx for one, pick their backend.)
    """
    libraries: set[str] = set()

    async def double(n: int) -> int:
        libraries.add(sniffio.current_async_library())
        await trio.lowlevel.checkpoint()
        return 2 * n

    async def refuse() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("from trio")

    async def scenario() -> tuple[list[int], str]:
        libraries.add(sniffio.current_async_library())
        # More calls than one batch holds.
        results = [await trio_asyncio.trio_as_aio(double)(n) for n in range(200)]
        try:
            await trio_asyncio.trio_as_aio(refuse)()
        except ValueError as error:
            return results, str(error)
        raise AssertionError("the trio error did not reach asyncio")  # pragma: no cover

    outcome: list[tuple[list[int], str]] = []
    async with asyncio_loop():
        with trio.move_on_after(5):
            outcome.append(await trio_asyncio.aio_as_trio(scenario)())
    assert outcome, "trio functions awaited from asyncio never returned"
    assert outcome[0] == ([2 * n for n in range(200)], "from trio")
    assert libraries == {"asyncio", "trio"}, "a trio task started from asyncio saw 'asyncio'"


async def test_a_trio_task_starts_in_its_place_among_callbacks() -> None:
    """A trio task queued between two callbacks has started before the second runs."""
    order: list[str] = []
    async with asyncio_loop():
        loop = trio_asyncio.current_loop.get()

        async def task() -> str:
            order.append("task started")
            await trio.lowlevel.checkpoint()
            return "done"

        loop.call_soon(order.append, "before")
        future = loop.trio_as_future(task)
        loop.call_soon(order.append, "after")
        with trio.fail_after(2):
            assert await trio_asyncio.run_aio_future(future) == "done"
    assert order == ["before", "task started", "after"]


async def test_a_trio_task_cancelled_before_it_starts_resolves_its_future() -> None:
    ran: list[str] = []
    async with asyncio_loop():
        loop = trio_asyncio.current_loop.get()

        async def task() -> None:
            ran.append("body")  # pragma: no cover - must not run

        future = loop.trio_as_future(task)
        future.cancel()
        with trio.move_on_after(2):
            while not future.done():
                await trio.sleep(0.01)
        assert future.done(), "a trio task cancelled before it started left its future pending"
        assert future.cancelled()
    assert ran == []


# draining when the loop closes -------------------------------------------------------


LOOPS = [
    pytest.param(asyncio_loop, id="batching"),
    pytest.param(trio_asyncio.open_loop, id="stock"),
]


@pytest.mark.parametrize("open_loop", LOOPS)
async def test_work_queued_behind_stop_runs_before_the_loop_closes(
    open_loop: Callable[[], AbstractAsyncContextManager[object]],
) -> None:
    """Callbacks and due timers queued after stop() are drained at exit, as stock does.

    Timers not yet due are dropped (cancelled), and a closed loop refuses work.
    """
    ran: list[str] = []
    async with open_loop():
        loop = trio_asyncio.current_loop.get()
        later: list[asyncio.TimerHandle] = []

        def stop_then_queue() -> None:
            loop.stop()  # what it queues runs before what is queued next
            loop.call_soon(ran.append, "callback")
            loop.call_later(0, ran.append, "due timer")
            later.append(loop.call_later(3600, ran.append, "timer not due"))

        loop.call_soon(stop_then_queue)
        with trio.fail_after(2):
            await loop.wait_stopped()
        assert ran == [], "the loop ran work queued behind stop() before it stopped"
    # (The drain order of a timer against a callback is not promised: stock runs
    # them as queued here, the batching loop runs due timers first.)
    assert sorted(ran) == ["callback", "due timer"], "work queued behind stop() was not drained"
    assert later[0].cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(ran.append, "too late")


@pytest.mark.parametrize("open_loop", LOOPS)
async def test_callbacks_scheduled_by_a_task_cancelled_at_exit_all_run(
    open_loop: Callable[[], AbstractAsyncContextManager[object]],
) -> None:
    """An asyncio task cancelled when the loop closes may schedule more work; it runs.

    trio-asyncio promises that callbacks submitted before the last task exits
    run before the loop closes. The chain here outlives the tasks, so its
    tail is still queued when the loop stops and is drained one by one.
    """
    steps = 2000  # many batches
    done: list[int] = []
    async with open_loop():
        loop = trio_asyncio.current_loop.get()
        started = trio.Event()

        def step(n: int) -> None:
            done.append(n)
            if n + 1 < steps:
                loop.call_soon(step, n + 1)

        async def lingering() -> None:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                loop.call_soon(step, 0)
                raise

        task = asyncio.ensure_future(lingering(), loop=loop)
        with trio.fail_after(2):
            await started.wait()
    assert task.cancelled()
    assert len(done) == steps, f"{steps - len(done)} callbacks were dropped at exit"
    assert done == list(range(steps))


# hooks and fallbacks -----------------------------------------------------------------


async def test_debug_mode_still_checks_callbacks() -> None:
    async with asyncio_loop():
        loop = trio_asyncio.current_loop.get()

        async def coroutine_function() -> None:  # pragma: no cover - never called
            pass

        loop.set_debug(True)
        try:
            with pytest.raises(TypeError, match="coroutines cannot be used"):
                loop.call_soon(coroutine_function)
            with pytest.raises(TypeError, match="coroutines cannot be used"):
                loop.call_soon_threadsafe(coroutine_function)
        finally:
            loop.set_debug(False)


async def test_an_asyncio_signal_handler_runs() -> None:
    # A handler of our own underneath, so that a broken loop cannot let SIGUSR1
    # end the test run.
    original = signal.signal(signal.SIGUSR1, lambda _signal, _frame: None)
    try:
        async with asyncio_loop():
            loop = trio_asyncio.current_loop.get()
            caught = trio.Event()
            loop.add_signal_handler(signal.SIGUSR1, caught.set)
            try:
                os.kill(os.getpid(), signal.SIGUSR1)
                with trio.move_on_after(2):
                    await caught.wait()
                assert caught.is_set(), "a signal handler added through asyncio never ran"
            finally:
                loop.remove_signal_handler(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, original)


async def test_a_timer_queued_before_the_switch_still_fires() -> None:
    async with trio_asyncio.open_loop() as loop:
        fired = trio.Event()
        loop.call_soon(lambda: None)  # taken by the parked stock loop task...
        loop.call_later(0.01, fired.set)  # ...so this one waits in its channel
        loop.__class__ = BatchingEventLoop
        with trio.move_on_after(2):
            await fired.wait()
        assert fired.is_set(), "a timer queued before the class switch was lost"


async def test_a_cancelled_callback_never_runs() -> None:
    ran: list[str] = []
    async with asyncio_loop():
        loop = trio_asyncio.current_loop.get()
        done = trio.Event()
        loop.call_soon(ran.append, "cancelled").cancel()
        loop.call_soon(done.set)
        with trio.fail_after(2):
            await done.wait()  # FIFO: the cancelled one came first
    assert ran == []
