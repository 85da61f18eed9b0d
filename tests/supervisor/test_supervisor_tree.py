"""Supervision trees, open_supervisor, dynamic children, events, logging and signals.

Test rules:
- Time is virtual (``autojump_clock``) and asserted exactly, except in the signal tests:
  those deliver a real signal to this process and bound the wait with a real-time
  ``trio.fail_after`` instead.
- Children are scripted (``script`` fixture, see conftest.py); events are collected with
  ``on_event=events.append`` and compared whole.
- Concurrency errors are asserted precisely: ``pytest.raises`` with the full message, or
  ``pytest.RaisesGroup`` when a group is the documented outcome.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

import volta.supervisor
from volta.supervisor import (
    Backoff,
    ChildSpec,
    EventKind,
    Intensity,
    Supervisor,
    SupervisorEscalation,
    SupervisorEvent,
    SupervisorSpec,
    SupervisorStatistics,
    open_supervisor,
    stop_on_signals,
)

if TYPE_CHECKING:
    from .conftest import RunToEnd, Script


def test_public_names_are_deliberate() -> None:
    assert sorted(volta.supervisor.__all__) == [
        "Backoff",
        "ChildSpec",
        "DEFAULT_SHUTDOWN_TIMEOUT",
        "EventKind",
        "EventSink",
        "Intensity",
        "Restart",
        "Strategy",
        "Supervisor",
        "SupervisorEscalation",
        "SupervisorEvent",
        "SupervisorSpec",
        "SupervisorStatistics",
        "open_supervisor",
        "shutdown_scope",
        "stop_on_signals",
    ]
    for name in volta.supervisor.__all__:
        assert getattr(volta.supervisor, name) is not None


async def test_an_inner_escalation_is_a_crash_in_the_outer_supervisor_and_escalates_further(
    autojump_clock: trio.testing.MockClock,
    script: Script,
    events: list[SupervisorEvent],
    run_to_end: RunToEnd,
) -> None:
    inner = Supervisor(
        SupervisorSpec("inner", [script.spec("worker", script.crash(1.0))]), on_event=events.append
    )
    outer_spec = SupervisorSpec(
        "outer",
        [script.spec("other"), ChildSpec("inner", inner.run)],
        intensity=Intensity(max_restarts=1, period=10.0),
    )
    with pytest.raises(SupervisorEscalation) as caught:
        await run_to_end(Supervisor(outer_spec, on_event=events.append))

    # inner gives up at 2 (worker crashed at 1 and 2); outer restarts it; it gives up again at 4.
    assert trio.current_time() == 4.0
    assert script.times("start", "worker") == [0.0, 1.0, 2.0, 3.0]
    assert script.times("start", "other") == [0.0]
    assert script.times("stop", "other") == [4.0]
    escalation = caught.value
    assert (escalation.supervisor, escalation.child) == ("outer", "inner")
    inner_error = escalation.last_error
    assert isinstance(inner_error, SupervisorEscalation)
    assert str(inner_error) == (
        "supervisor 'inner' gave up: child 'worker' failed 2 times within 5.0 s (max 1); "
        "last error: RuntimeError('worker crash #4')"
    )
    assert str(escalation).endswith(f"last error: {inner_error!r}")
    outer_view = [(e.kind, e.at) for e in events if e.supervisor == "outer" and e.child == "inner"]
    assert outer_view == [
        (EventKind.START, 0.0),
        (EventKind.EXIT, 2.0),
        (EventKind.RESTART, 2.0),
        (EventKind.START, 2.0),
        (EventKind.EXIT, 4.0),
        (EventKind.ESCALATION, 4.0),
    ]


async def test_a_tree_stops_depth_first_in_reverse_start_order(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    inner = Supervisor(SupervisorSpec("inner", [script.spec("x"), script.spec("y")]))
    spec = SupervisorSpec(
        "outer", [script.spec("a"), ChildSpec("inner", inner.run), script.spec("b")]
    )
    async with open_supervisor(spec):
        assert script.events() == [(what, name) for name in "axyb" for what in ("init", "start")]
    assert script.events("stop") == [("stop", "b"), ("stop", "y"), ("stop", "x"), ("stop", "a")]


async def test_open_supervisor_cancels_the_body_and_raises_the_escalation_bare(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec("s", [script.spec("a"), script.spec("b", script.crash(1.0))])
    body_cancelled_at: list[float] = []

    async def use_supervisor() -> None:
        async with open_supervisor(spec):
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                body_cancelled_at.append(trio.current_time())
                raise

    with pytest.raises(SupervisorEscalation, match=r"^supervisor 's' gave up: child 'b' failed"):
        await use_supervisor()
    assert body_cancelled_at == [2.0]
    assert script.events("stop") == [("stop", "a")]


async def test_open_supervisor_lets_a_single_body_error_out_bare_after_stopping_in_order(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec("s", [script.spec("a"), script.spec("b")])

    async def use_supervisor() -> None:
        async with open_supervisor(spec):
            try:
                raise ValueError("context")
            except ValueError:
                # A KeyError whose __context__ must survive the unwrapping.
                {}["missing"]  # type: ignore[index]

    with pytest.raises(KeyError, match=r"^'missing'$") as caught:
        await use_supervisor()
    assert script.events("stop") == [("stop", "b"), ("stop", "a")]
    assert isinstance(caught.value.__context__, ValueError)


async def test_cancelling_around_open_supervisor_stops_in_order_and_is_absorbed(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec("s", [script.spec("a"), script.spec("b", script.forever(cleanup=1.0))])
    with trio.move_on_after(3) as timeout:
        async with open_supervisor(spec):
            await trio.sleep_forever()
    assert timeout.cancelled_caught
    assert trio.current_time() == 4.0
    assert script.events("stop", "cleaned") == [("stop", "b"), ("cleaned", "b"), ("stop", "a")]


async def test_open_supervisor_groups_simultaneous_body_and_supervisor_errors(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec("s", [script.spec("b", script.crash(1.0))])
    with pytest.RaisesGroup(
        pytest.RaisesExc(SupervisorEscalation, match="child 'b' failed 2 times"),
        pytest.RaisesExc(ValueError, match="^cleanup failed$"),
    ):
        async with open_supervisor(spec):
            try:
                await trio.sleep_forever()
            finally:
                raise ValueError("cleanup failed")


async def test_start_child_appends_a_ready_child_that_stops_first(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec("s", [script.spec("a")])
    async with open_supervisor(spec) as supervisor:
        await supervisor.start_child(script.spec("late", script.forever(init=2.0)))
        assert trio.current_time() == 2.0
        assert script.times("start", "late") == [2.0]
        assert supervisor.statistics() == SupervisorStatistics(
            name="s", running=2, waiting=0, restarts=0, child_restarts=(("a", 0), ("late", 0))
        )
    assert script.events("stop") == [("stop", "late"), ("stop", "a")]


async def test_start_child_is_restarted_like_any_child_once_started(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    async with open_supervisor(SupervisorSpec("s", [script.spec("a")])) as supervisor:
        await supervisor.start_child(script.spec("late", script.crash(1.0), script.forever()))
        await trio.sleep(2)
        assert dict(supervisor.statistics().child_restarts) == {"a": 0, "late": 1}
    assert script.times("start", "late") == [0.0, 1.0]


async def test_start_child_reports_a_failed_start_to_the_caller_and_forgets_the_child(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    async with open_supervisor(SupervisorSpec("s", [script.spec("a")])) as supervisor:
        with pytest.raises(RuntimeError, match=r"^late start #1$"):
            await supervisor.start_child(script.spec("late", script.fail_start()))
        with pytest.raises(ValueError, match=r"^supervisor 's' already has a child named 'a'$"):
            await supervisor.start_child(script.spec("a"))
        stats = supervisor.statistics()
    assert stats.child_restarts == (("a", 0),)
    assert stats.restarts == 0
    assert script.events("init") == [("init", "a"), ("init", "late")]


async def test_stop_child_stops_it_in_time_and_does_not_restart_it(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec(
        "s", [script.spec("a"), script.spec("b", script.forever(cleanup=1.0)), script.spec("c")]
    )
    async with open_supervisor(spec) as supervisor:
        await supervisor.stop_child("b")
        assert trio.current_time() == 1.0
        await trio.sleep(10)
        assert supervisor.statistics().child_restarts == (("a", 0), ("c", 0))
        with pytest.raises(KeyError, match="has no child 'b'"):
            await supervisor.stop_child("b")
    assert script.starts("b") == 1
    assert script.events("stop", "cleaned") == [
        ("stop", "b"),
        ("cleaned", "b"),
        ("stop", "c"),
        ("stop", "a"),
    ]


async def test_start_and_stop_child_need_a_running_supervisor(script: Script) -> None:
    supervisor = Supervisor(SupervisorSpec("idle"))
    with pytest.raises(RuntimeError, match=r"^supervisor 'idle' is not running$"):
        await supervisor.start_child(script.spec("a"))
    with pytest.raises(RuntimeError, match=r"^supervisor 'idle' is not running$"):
        await supervisor.stop_child("a")


async def test_ten_thousand_dynamic_children_start_and_stop_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stopped: list[int] = []

    def agent(number: int) -> ChildSpec:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                stopped.append(number)

        return ChildSpec(f"agent-{number}", run)

    spec = SupervisorSpec("pool", auto_shutdown=False)
    async with open_supervisor(spec) as supervisor:
        for number in range(10_000):
            await supervisor.start_child(agent(number))
        assert supervisor.statistics().running == 10_000
        await supervisor.stop_child("agent-5000")
    assert stopped == [5000, *(n for n in range(9_999, -1, -1) if n != 5000)]


async def test_events_tell_the_whole_story(
    autojump_clock: trio.testing.MockClock, script: Script, events: list[SupervisorEvent]
) -> None:
    spec = SupervisorSpec(
        "s",
        [script.spec("a", script.crash(1.0), script.forever())],
        backoff=Backoff(initial=0.5, maximum=0.5, jitter=0.0),
    )
    async with open_supervisor(spec, on_event=events.append):
        await trio.sleep(2)

    def event(kind: EventKind, at: float, restarts: int, **extra: object) -> SupervisorEvent:
        return SupervisorEvent(kind, "s", "a", at, restarts, **extra)  # type: ignore[arg-type]

    crash = "RuntimeError('a crash #1')"
    assert events == [
        event(EventKind.START, 0.0, 0),
        event(EventKind.EXIT, 1.0, 0, reason=crash),
        event(EventKind.RESTART, 1.0, 1, reason=crash, delay=0.5),
        event(EventKind.START, 1.5, 1),
        event(EventKind.STOP, 2.0, 1),
    ]


async def test_a_failing_event_sink_cannot_break_the_supervisor(
    autojump_clock: trio.testing.MockClock, script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def broken_sink(event: SupervisorEvent) -> None:
        nonlocal calls
        calls += 1
        raise ZeroDivisionError("sink bug")

    spec = SupervisorSpec("s", [script.spec("a", script.crash(1.0), script.forever())])
    async with open_supervisor(spec, on_event=broken_sink) as supervisor:
        await trio.sleep(2)
        assert supervisor.statistics().running == 1
    assert script.times("start", "a") == [0.0, 1.0]
    assert calls == 5  # start, exit, restart, start, stop
    sink_errors = [r for r in caplog.records if "event sink" in r.getMessage()]
    assert len(sink_errors) == 5
    assert all(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in sink_errors)


async def test_crashes_are_logged_as_warnings_and_escalations_as_errors(
    autojump_clock: trio.testing.MockClock,
    script: Script,
    caplog: pytest.LogCaptureFixture,
    run_to_end: RunToEnd,
) -> None:
    caplog.set_level(logging.DEBUG, logger="volta.supervisor")
    spec = SupervisorSpec("s", [script.spec("a", script.crash(1.0))])
    with pytest.raises(SupervisorEscalation):
        await run_to_end(Supervisor(spec))

    records = [(r.levelno, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert records == [
        (logging.DEBUG, "supervisor 's': start 'a'"),
        (logging.WARNING, "supervisor 's': exit 'a'"),
        (logging.INFO, "supervisor 's': restart 'a'"),
        (logging.DEBUG, "supervisor 's': start 'a'"),
        (logging.WARNING, "supervisor 's': exit 'a'"),
        (logging.ERROR, "supervisor 's': escalation 'a'"),
    ]
    assert all(r.name == "volta.supervisor" for r in caplog.records)
    crash_record = caplog.records[1]
    assert crash_record.exc_info is not None
    assert re.fullmatch(r"a crash #1", str(crash_record.exc_info[1]))


async def test_stop_on_signals_stops_a_tree_in_order_on_a_real_sigterm(
    script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    spec = SupervisorSpec("root", [script.spec("a"), script.spec("b")])
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(stop_on_signals, nursery.cancel_scope)
            await nursery.start(Supervisor(spec).run)
            os.kill(os.getpid(), signal.SIGTERM)
    assert nursery.cancel_scope.cancelled_caught
    assert script.events("stop") == [("stop", "b"), ("stop", "a")]
    assert "received SIGTERM: stopping in order" in caplog.text


async def test_stop_on_signals_returns_the_signal_and_only_listens_to_the_given_ones() -> None:
    with trio.fail_after(5), trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            waiter = {}

            async def wait() -> None:
                waiter["signal"] = await stop_on_signals(scope, [signal.SIGUSR1])

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            os.kill(os.getpid(), signal.SIGUSR1)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert waiter == {"signal": signal.SIGUSR1}
