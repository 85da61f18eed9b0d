"""The asyncio event loop that nats-py runs on, hosted inside trio by trio-asyncio.

Only ``bus/`` touches asyncio. Every bus in a trio run shares one loop: the first
``open_bus`` opens it, later ones (in the same task tree) reuse it.

Why a subclass: stock trio-asyncio runs each asyncio callback as its own trip
through a trio memory channel, with a cancel scope per trip when timers exist,
``inspect`` checks on every ``call_soon``, and a full round trip through the
loop after every socket read. A request-reply through nats-py then costs about
14 trio scheduler rounds where asyncio needs 10 cheaper ones, and its p50 is
1.7-1.95x that of plain asyncio. :class:`BatchingEventLoop` keeps ready
callbacks in a deque and runs them in batches (everything ready, plus what it
queues, up to ``_batch_budget``), wakes the loop task through the channel only
when it sleeps, and sleeps in one cancel scope whose deadline follows the
earliest timer. That is 4 rounds per request and the same p50 as plain asyncio.

What stays as in asyncio: FIFO order of callbacks; timers never fire early; what
one socket-read callback queued runs before the next read of that socket. What
differs: up to ``_batch_budget`` callbacks run between two I/O polls (asyncio
runs one wave of ready callbacks per poll).

It relies on trio-asyncio internals (``_q_send``, ``_q_recv``, ``_timers``,
``_nursery``, ``_token``, ``_main_loop_one``, ``_io_task``, ``AsyncHandle``),
hence the version pin in pyproject.toml and :func:`_supports_batching`, which
keeps the stock loop (slower, still correct) if a release changes them.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import heapq
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio_asyncio
from sniffio import thread_local as sniffio_library

from volta.core import unwrap_lone_exception

try:
    from trio_asyncio._handles import AsyncHandle  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - a trio-asyncio release without it
    AsyncHandle = None

log = logging.getLogger("volta.bus")

_STOCK_HOOKS = ("_q_send", "_q_recv", "_timers", "_nursery", "_token")


class BatchingEventLoop(trio_asyncio.TrioEventLoop):  # type: ignore[misc]
    """trio-asyncio's loop with batched callbacks (see the module docstring).

    Made by switching a running loop's class (``loop.__class__ = ...``) right
    after ``trio_asyncio.open_loop()`` created it, so nothing here may need
    ``__init__``: state lives in class defaults and a cached property.
    """

    _batch_budget = 64
    """Callbacks run between two trips through trio's scheduler (I/O polls)."""

    _batch_parked = True
    """True while the loop task sleeps in ``_q_recv.receive()``: the next queued
    callback must wake it. True by default so that the stock loop task, asleep in
    the same ``receive()`` when the class is switched, is woken too."""

    _batch_taken = 0
    """Callbacks taken off the ready deque so far (see :meth:`_io_task`)."""

    @functools.cached_property
    def _batch_ready(self) -> collections.deque[Any]:
        """Runnable handles (callbacks, due timers, trio-task handles), FIFO."""
        return collections.deque()

    # queueing ---------------------------------------------------------------------

    def _check_callback(self, callback: Any, method: str) -> None:
        # asyncio runs this (inspect-heavy) check only in debug mode; so do we.
        if self._debug:
            super()._check_callback(callback, method)

    def _batch_wake(self) -> None:
        if self._batch_parked:
            self._batch_parked = False
            self._q_send.send_nowait(None)

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> Any:
        # The hot path: every future callback and task step comes through here.
        if self._debug:
            super()._check_callback(callback, "call_soon")
        self._check_closed()
        handle = asyncio.Handle(callback, args, self, context)
        self._batch_ready.append(handle)
        self._batch_wake()
        return handle

    def _queue_handle(self, handle: Any) -> Any:
        # call_later/call_at, stop(), synchronize(), trio_as_future(), run_trio_task().
        self._check_closed()
        self._batch_enqueue(handle)
        return handle

    def _batch_enqueue(self, handle: Any) -> None:
        if isinstance(handle, asyncio.TimerHandle):
            heapq.heappush(self._timers, handle)
            if self._timers[0] is handle:  # earlier than what the loop sleeps towards
                self._batch_wake()
        else:
            self._batch_ready.append(handle)
            self._batch_wake()

    def call_soon_threadsafe(
        self, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> Any:
        self._check_callback(callback, "call_soon_threadsafe")
        self._check_closed()
        handle = asyncio.Handle(callback, args, self, context)
        self._token.run_sync_soon(self._batch_enqueue, handle)
        return handle

    def _handle_sig(self, sig: int, _frame: Any) -> None:
        self._token.run_sync_soon(self._batch_enqueue, self._signal_handlers[sig])

    # the loop task ------------------------------------------------------------------

    async def _main_loop_one(self, no_wait: bool = False) -> None:
        # Called over and over by trio-asyncio's _main_loop in a shielded scope; this
        # version only returns when stop() raises out of a callback.
        if no_wait:
            await self._batch_run_one_nowait()
            return
        self._batch_adopt_channel()
        while True:
            # The deadline of this scope follows the earliest timer; a new scope is
            # needed only after it fired.
            with trio.CancelScope() as scope:
                await self._batch_run(scope)

    def _batch_adopt_channel(self) -> None:
        """Move what the stock code queued before the switch to the front, in order."""
        earlier = []
        while True:
            try:
                item = self._q_recv.receive_nowait()
            except trio.WouldBlock:
                break
            if item is None:
                continue
            if isinstance(item, asyncio.TimerHandle):
                heapq.heappush(self._timers, item)
            else:
                earlier.append(item)
        self._batch_ready.extendleft(reversed(earlier))

    async def _batch_run(self, scope: trio.CancelScope) -> None:
        ready, timers, channel = self._batch_ready, self._timers, self._q_recv
        while True:
            if timers:
                now = self.time()
                while timers and timers[0]._when <= now:
                    handle = heapq.heappop(timers)
                    if not handle._cancelled:
                        ready.append(handle)
            if not ready:
                await self._batch_sleep(scope, timers, channel)
                continue
            await self._batch_run_wave(ready)
            if ready:
                # Budget spent: let I/O and other trio tasks run before the rest.
                await trio.lowlevel.cancel_shielded_checkpoint()

    async def _batch_sleep(self, scope: trio.CancelScope, timers: list[Any], channel: Any) -> None:
        """Sleep until something is queued or the earliest timer is due."""
        while timers and timers[0]._cancelled:
            heapq.heappop(timers)
        deadline = timers[0]._when if timers else math.inf
        if scope.deadline != deadline:
            scope.deadline = deadline  # a deadline in the past is fine
        self._batch_parked = True
        try:
            item = await channel.receive()  # cancelled by the scope's deadline
        finally:
            self._batch_parked = False
        if item is not None:  # sent by code that does not know about the deque
            if isinstance(item, asyncio.TimerHandle):
                heapq.heappush(timers, item)
            else:
                self._batch_ready.appendleft(item)

    async def _batch_run_wave(self, ready: collections.deque[Any]) -> None:
        """Run what is ready now, plus what that queues, up to the budget."""
        budget = left = max(len(ready), self._batch_budget)
        previous = sniffio_library.name
        sniffio_library.name = "asyncio"
        try:
            while left and ready:
                left -= 1
                handle = ready.popleft()
                if AsyncHandle is not None and isinstance(handle, AsyncHandle):
                    # Starts a trio task (its _run cancels the future if cancelled).
                    self._batch_taken += budget - left
                    budget = left
                    sniffio_library.name = previous
                    handle._context.run(
                        self._nursery.start_soon, handle._run, name=handle._callback
                    )
                    with trio.CancelScope(shield=True):
                        await handle._started.wait()
                    sniffio_library.name = "asyncio"
                elif not handle._cancelled:
                    handle._run()
        finally:
            # On BaseException (stop() raises TrioAsyncioExit) what is left stays
            # queued for _main_loop_exit to drain.
            self._batch_taken += budget - left
            sniffio_library.name = previous

    async def _batch_run_one_nowait(self) -> None:
        """One item or ``trio.WouldBlock``: the contract _main_loop_exit drains with."""
        timers = self._timers
        try:
            item = self._q_recv.receive_nowait()
        except trio.WouldBlock:
            if timers and timers[0]._when <= self.time():
                item = heapq.heappop(timers)
            elif self._batch_ready:
                item = self._batch_ready.popleft()
                self._batch_taken += 1
            else:
                raise
        else:
            if item is None:
                return
            if isinstance(item, asyncio.TimerHandle):
                heapq.heappush(timers, item)
                return
        if AsyncHandle is not None and isinstance(item, AsyncHandle):
            item._context.run(self._nursery.start_soon, item._run, name=item._callback)
            await item._started.wait()
        elif not item._cancelled:
            previous, sniffio_library.name = sniffio_library.name, "asyncio"
            try:
                item._run()
            finally:
                sniffio_library.name = previous

    # I/O --------------------------------------------------------------------------------

    async def _io_task(self, fd: Any, handle: Any, wait_ready: Callable[..., Any]) -> None:
        # Stock trio-asyncio round-trips through the loop after every read/write
        # callback, so that what one read queued runs before the next read (as in
        # asyncio). Here that wait happens only when the socket is ready again
        # before the loop has run what the last callback queued, which is rare.
        ready = self._batch_ready
        queued = 0
        with handle._scope:
            try:
                while not handle._cancelled:
                    try:
                        await wait_ready(fd)
                    except OSError:
                        if handle._cancelled:  # closed right after remove_reader
                            break
                        raise
                    if self._batch_taken < queued:
                        await self.synchronize()
                    if handle._cancelled:
                        break
                    handle._run()
                    queued = self._batch_taken + len(ready)
            except Exception as error:
                handle._raise(error)


def _supports_batching(loop: Any) -> bool:
    """Whether this trio-asyncio has the internals :class:`BatchingEventLoop` uses."""
    return (
        isinstance(loop, trio_asyncio.TrioEventLoop)
        and AsyncHandle is not None
        and all(hasattr(loop, name) for name in _STOCK_HOOKS)
        and callable(getattr(loop, "_main_loop_one", None))
        and callable(getattr(loop, "_io_task", None))
    )


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[None]:
    """Make sure a trio-asyncio loop runs for the duration of the block.

    A loop opened here is switched to :class:`BatchingEventLoop`; a loop that
    was already running (opened by the application) is left as it is.
    """
    if trio_asyncio.current_loop.get() is not None:
        yield
        return
    with unwrap_lone_exception():
        async with trio_asyncio.open_loop() as loop:
            if _supports_batching(loop):
                loop.__class__ = BatchingEventLoop
            else:  # pragma: no cover - depends on the installed trio-asyncio
                log.warning("trio-asyncio changed: using its stock loop (slower)")
            yield


def is_batching(loop: Any) -> bool:
    """Whether a loop is the batching one (for statistics and tests)."""
    return isinstance(loop, BatchingEventLoop)
