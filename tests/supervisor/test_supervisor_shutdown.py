"""Orderly stop: reverse start order, shutdown timeouts, shutdown_scope, cancellation.

Test rules:
- Time is virtual: every test uses ``autojump_clock`` and asserts exact virtual times, so a
  shutdown that "hangs" for a minute costs no real time.
- Children are scripted (``script`` fixture, see conftest.py) and log what they do with
  timestamps; tests assert the whole log.
- Exceptions are asserted precisely (``pytest.RaisesGroup`` for groups).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest
import trio

from volta.supervisor import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    Backoff,
    ChildSpec,
    EventKind,
    Intensity,
    Restart,
    Supervisor,
    SupervisorEvent,
    SupervisorSpec,
    open_supervisor,
    shutdown_scope,
)

if TYPE_CHECKING:
    from .conftest import RunToEnd, Script


async def test_cancelling_stops_children_one_at_a_time_in_reverse_start_order(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec("s", [script.spec(name, script.forever(cleanup=1.0)) for name in "abc"])
    with trio.move_on_after(10):
        await Supervisor(spec).run()

    assert trio.current_time() == 13.0
    assert [entry for entry in script.log if entry[1] in ("stop", "cleaned")] == [
        (10.0, "stop", "c"),
        (11.0, "cleaned", "c"),
        (11.0, "stop", "b"),
        (12.0, "cleaned", "b"),
        (12.0, "stop", "a"),
        (13.0, "cleaned", "a"),
    ]


async def test_a_hanging_cleanup_is_cut_off_at_its_shutdown_timeout(
    autojump_clock: trio.testing.MockClock, script: Script, events: list[SupervisorEvent]
) -> None:
    spec = SupervisorSpec(
        "s",
        [
            script.spec("a", script.forever(cleanup=1.0)),
            script.spec("b", script.forever(cleanup=math.inf), shutdown_timeout=2.0),
        ],
    )
    async with open_supervisor(spec, on_event=events.append):
        await trio.sleep(10)

    assert [entry for entry in script.log if entry[1] in ("stop", "cut", "cleaned")] == [
        (10.0, "stop", "b"),
        (12.0, "cut", "b"),
        (12.0, "stop", "a"),
        (13.0, "cleaned", "a"),
    ]
    stops = [(e.kind, e.child, e.at) for e in events if e.kind is not EventKind.START]
    assert stops == [
        (EventKind.SHUTDOWN_TIMEOUT, "b", 12.0),
        (EventKind.STOP, "b", 12.0),
        (EventKind.STOP, "a", 13.0),
    ]
    [timeout] = [e for e in events if e.kind is EventKind.SHUTDOWN_TIMEOUT]
    assert timeout.reason == "still running 2.0 s after the stop began"


async def test_a_child_that_outlives_its_deadline_is_still_waited_for(
    autojump_clock: trio.testing.MockClock, script: Script, events: list[SupervisorEvent]
) -> None:
    async def stubborn(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            # Misbehaving on purpose: an unbounded shield instead of shutdown_scope().
            with trio.CancelScope(shield=True):
                await trio.sleep(3)
            script.record("finished", "stubborn")

    spec = SupervisorSpec(
        "s", [script.spec("a"), ChildSpec("stubborn", stubborn, shutdown_timeout=1.0)]
    )
    async with open_supervisor(spec, on_event=events.append):
        pass

    # Never two copies of a child, so the supervisor waits; the event names the culprit.
    assert [(e.kind, e.child, e.at) for e in events if e.kind is not EventKind.START] == [
        (EventKind.SHUTDOWN_TIMEOUT, "stubborn", 1.0),
        (EventKind.STOP, "stubborn", 3.0),
        (EventKind.STOP, "a", 3.0),
    ]
    assert script.log[-2:] == [(3.0, "finished", "stubborn"), (3.0, "stop", "a")]


async def test_cleanup_that_fits_in_the_timeout_emits_no_timeout_event(
    autojump_clock: trio.testing.MockClock, script: Script, events: list[SupervisorEvent]
) -> None:
    spec = SupervisorSpec(
        "s", [script.spec("a", script.forever(cleanup=1.5), shutdown_timeout=2.0)]
    )
    async with open_supervisor(spec, on_event=events.append):
        pass
    assert [(e.kind, e.at) for e in events] == [(EventKind.START, 0.0), (EventKind.STOP, 1.5)]


async def test_shutdown_scope_deadline_is_fixed_when_the_stop_begins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines: list[float] = []

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            # Two scopes opened a second apart share one deadline: the stop's.
            for _ in range(2):
                with shutdown_scope() as scope:
                    deadlines.append(scope.deadline)
                    assert scope.shield
                    await trio.sleep(1)

    spec = SupervisorSpec("s", [ChildSpec("a", child, shutdown_timeout=3.0)])
    with trio.move_on_after(4):
        await Supervisor(spec).run()
    assert deadlines == [7.0, 7.0]
    assert trio.current_time() == 6.0


async def test_shutdown_scope_in_a_child_that_crashed_uses_its_own_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines: list[float] = []

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep(2)
            raise RuntimeError("boom")
        finally:
            with shutdown_scope() as scope:
                deadlines.append(scope.deadline)

    spec = SupervisorSpec("s", [ChildSpec("a", child, shutdown_timeout=3.0)])
    with trio.move_on_after(3):
        await Supervisor(spec).run()
    # Crashed at 2 with a 3 s timeout, then the restarted child was stopped at 3.
    assert deadlines == [5.0, 6.0]


async def test_shutdown_scope_outside_a_supervisor_uses_the_default_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await trio.sleep(1)
    with shutdown_scope() as scope:
        assert scope.shield
        assert scope.deadline == 1.0 + DEFAULT_SHUTDOWN_TIMEOUT
        await trio.sleep_forever()
    assert scope.cancelled_caught
    assert trio.current_time() == 6.0


async def test_cancelling_while_a_child_initialises_aborts_it_and_stops_the_others(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec(
        "s", [script.spec("a"), script.spec("slow", script.forever(init=100.0)), script.spec("c")]
    )
    with trio.move_on_after(3) as timeout:
        await Supervisor(spec).run()

    assert timeout.cancelled_caught
    assert trio.current_time() == 3.0
    assert script.events() == [("init", "a"), ("start", "a"), ("init", "slow"), ("stop", "a")]


async def test_cancelling_during_a_backoff_wait_stops_the_running_children(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec(
        "s",
        [script.spec("a"), script.spec("b", script.crash(1.0))],
        intensity=Intensity(max_restarts=5),
        backoff=Backoff(initial=60.0, maximum=60.0, jitter=0.0),
    )
    with trio.move_on_after(10):
        await Supervisor(spec).run()
    assert trio.current_time() == 10.0
    assert script.events("start", "stop", "crash") == [
        ("start", "a"),
        ("start", "b"),
        ("crash", "b"),
        ("stop", "a"),
    ]


class Fatal(BaseException):
    """Stands in for KeyboardInterrupt: not an Exception, so never a crash."""


async def test_a_base_exception_from_a_child_is_not_a_crash_and_propagates_after_an_orderly_stop(
    autojump_clock: trio.testing.MockClock, script: Script, run_to_end: RunToEnd
) -> None:
    async def fatal(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(1)
        raise Fatal("operator pressed Ctrl-C")

    spec = SupervisorSpec(
        "s",
        [
            script.spec("a", script.forever(cleanup=1.0)),
            ChildSpec("fatal", fatal),
            script.spec("c"),
        ],
    )
    with pytest.RaisesGroup(pytest.RaisesExc(Fatal, match="^operator pressed Ctrl-C$")):
        await run_to_end(Supervisor(spec))

    assert trio.current_time() == 2.0
    assert script.events("stop", "cleaned") == [("stop", "c"), ("stop", "a"), ("cleaned", "a")]


async def test_a_supervisor_cannot_run_twice_at_once_but_can_run_again(
    autojump_clock: trio.testing.MockClock, script: Script, run_to_end: RunToEnd
) -> None:
    job = script.spec("a", script.finish(1.0), restart=Restart.TRANSIENT)
    supervisor = Supervisor(SupervisorSpec("s", [job]))
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with pytest.raises(RuntimeError, match=r"^supervisor 's' is already running$"):
            await supervisor.run()
    assert trio.current_time() == 1.0
    await run_to_end(supervisor)
    assert script.times("start", "a") == [0.0, 1.0]
    assert trio.current_time() == 2.0


async def test_a_child_that_reports_ready_after_its_start_was_cancelled_still_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def stubborn(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Misbehaving on purpose: swallows the cancellation of its start.
        with contextlib.suppress(trio.Cancelled):
            await trio.sleep(5)
        task_status.started()
        await trio.sleep(100)

    with trio.move_on_after(1):
        await Supervisor(SupervisorSpec("s", [ChildSpec("stubborn", stubborn)])).run()
    # It must not be shielded like a started child, or the supervisor would wait until 101.
    assert trio.current_time() == 1.0


async def test_requests_still_queued_when_the_supervisor_stops_are_answered(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    supervisor = Supervisor(
        SupervisorSpec("s", [script.spec("a"), script.spec("b", script.forever(cleanup=2.0))])
    )
    supervision = trio.CancelScope()
    outcomes: dict[str, str] = {}

    async def supervise(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with supervision:
            await supervisor.run(task_status=task_status)

    async def ask(key: str, request: Callable[[], Awaitable[None]], delay: float) -> None:
        await trio.sleep(delay)
        try:
            with trio.fail_after(100):  # an unanswered request fails instead of hanging
                await request()
        except RuntimeError as error:
            outcomes[key] = str(error)
        else:
            outcomes[key] = f"done at {trio.current_time()}"

    async with trio.open_nursery() as nursery:
        await nursery.start(supervise)
        nursery.start_soon(ask, "stop b", functools.partial(supervisor.stop_child, "b"), 0.0)
        # These queue up behind the 2 s stop of b; the supervisor is cancelled at 1.
        nursery.start_soon(ask, "stop a", functools.partial(supervisor.stop_child, "a"), 0.5)
        start_c = functools.partial(supervisor.start_child, script.spec("c"))
        nursery.start_soon(ask, "start c", start_c, 0.5)
        await trio.sleep(1)
        supervision.cancel()

    assert outcomes == {
        "stop b": "done at 2.0",
        "stop a": "done at 2.0",
        "start c": "supervisor 's' stopped",
    }
    assert script.events("stop", "cleaned") == [("stop", "b"), ("cleaned", "b"), ("stop", "a")]
    assert script.starts("c") == 0


class Runaway(BaseException):
    """Raised by a child started far more often than any test needs: a hang, turned into
    a failure."""


async def test_a_child_failing_at_once_on_every_start_cannot_keep_a_stop_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A child that fails before it is ready, without a checkpoint (a closed bus does
    that), restarted at once: the supervisor must still see its own cancellation."""
    starts = 0

    async def broken(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal starts
        starts += 1
        if starts > 10_000:
            raise Runaway(f"started {starts} times: the stop never got in")
        raise RuntimeError("no bus")

    spec = SupervisorSpec(
        "s", [ChildSpec("broken", broken)], intensity=Intensity(max_restarts=10**9, period=1.0)
    )
    async with trio.open_nursery() as nursery:

        async def stop_after_a_hundred_starts() -> None:
            while starts < 100:
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()

        nursery.start_soon(Supervisor(spec).run)
        nursery.start_soon(stop_after_a_hundred_starts)
    assert 100 <= starts < 10_000
    assert trio.current_time() == 0.0
