"""Restart policy: restart types, strategies, intensity, failed starts and backoff.

Test rules:
- Time is virtual: every test that involves time uses ``autojump_clock`` and asserts the
  exact virtual times it expects, so nothing sleeps for real and nothing can flake.
- Children are scripted (``script`` fixture, see conftest.py): each child follows a plan and
  records start/stop/crash into one log, and tests assert that exact log.
- Errors are asserted precisely: ``pytest.raises(..., match=...)`` with the full message.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

import pytest
import trio

from volta.supervisor import (
    Backoff,
    ChildSpec,
    EventKind,
    Intensity,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEscalation,
    SupervisorEvent,
    SupervisorSpec,
    open_supervisor,
)

if TYPE_CHECKING:
    from .conftest import RunToEnd, Script


async def test_one_for_one_restarts_a_child_100_times_while_its_sibling_runs_on(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    # One crash per virtual second, so a 0.5 s window never holds more than one restart.
    spec = SupervisorSpec(
        "pool",
        [script.spec("steady"), script.spec("flaky", *[script.crash(1.0)] * 100, script.forever())],
        intensity=Intensity(max_restarts=1, period=0.5),
    )
    async with open_supervisor(spec) as supervisor:
        await trio.sleep(100.5)
        stats = supervisor.statistics()

    assert script.times("start", "flaky") == [float(n) for n in range(101)]
    assert script.starts("steady") == 1
    assert script.times("stop", "steady") == [100.5]  # only the final, orderly stop
    assert stats.running == 2
    assert stats.restarts == 100
    assert stats.child_restarts == (("steady", 0), ("flaky", 100))


async def test_exceeding_the_intensity_stops_all_in_reverse_order_and_escalates(
    autojump_clock: trio.testing.MockClock, script: Script, run_to_end: RunToEnd
) -> None:
    spec = SupervisorSpec(
        "agent-alpha",
        [script.spec("directory"), script.spec("inbox", script.crash(1.0)), script.spec("beat")],
    )
    expected = (
        "supervisor 'agent-alpha' gave up: child 'inbox' failed 2 times within 5.0 s (max 1); "
        "last error: RuntimeError('inbox crash #2')"
    )
    with pytest.raises(SupervisorEscalation, match=f"^{re.escape(expected)}$") as caught:
        await run_to_end(Supervisor(spec))

    assert trio.current_time() == 2.0
    assert script.events("crash", "stop") == [
        ("crash", "inbox"),
        ("crash", "inbox"),
        ("stop", "beat"),
        ("stop", "directory"),
    ]
    assert script.times("stop", "directory") == [2.0]
    escalation = caught.value
    assert (escalation.supervisor, escalation.child) == ("agent-alpha", "inbox")
    assert isinstance(escalation.last_error, RuntimeError)
    assert escalation.__cause__ is escalation.last_error


async def test_intensity_is_counted_across_children(
    autojump_clock: trio.testing.MockClock, script: Script, run_to_end: RunToEnd
) -> None:
    spec = SupervisorSpec(
        "s",
        [
            script.spec("a", script.crash(1.0), script.crash(2.0), script.forever()),
            script.spec("b", script.crash(2.0), script.forever()),
        ],
        intensity=Intensity(max_restarts=2, period=10.0),
    )
    expected = (
        "supervisor 's' gave up: 3 restarts within 10.0 s, the last after child 'a' failed "
        "(max 2); last error: RuntimeError('a crash #2')"
    )
    with pytest.raises(SupervisorEscalation, match=f"^{re.escape(expected)}$"):
        await run_to_end(Supervisor(spec))
    assert trio.current_time() == 3.0


async def test_restarts_exactly_one_period_apart_are_in_the_same_window_like_otp(
    autojump_clock: trio.testing.MockClock, script: Script, run_to_end: RunToEnd
) -> None:
    spec = SupervisorSpec("s", [script.spec("a", script.crash(5.0))])
    with pytest.raises(SupervisorEscalation, match=re.escape("failed 2 times within 5.0 s")):
        await run_to_end(Supervisor(spec))
    assert trio.current_time() == 10.0


async def test_restarts_just_over_one_period_apart_never_escalate(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec("s", [script.spec("a", script.crash(5.25))])
    with trio.move_on_after(30):
        await Supervisor(spec).run()
    assert script.times("start", "a") == [0.0, 5.25, 10.5, 15.75, 21.0, 26.25]


async def test_one_for_all_stops_the_others_in_reverse_then_restarts_all_in_order(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec(
        "s",
        [
            script.spec("a"),
            script.spec("b", script.crash(1.0), script.forever()),
            script.spec("c"),
            script.spec("d"),
        ],
        strategy=Strategy.ONE_FOR_ALL,
    )
    async with open_supervisor(spec):
        await trio.sleep(2)
        during = script.events("start", "stop", "crash")

    assert during == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("start", "d"),
        ("crash", "b"),
        ("stop", "d"),
        ("stop", "c"),
        ("stop", "a"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("start", "d"),
    ]
    assert script.times("start", "a") == [0.0, 1.0]


@pytest.mark.parametrize(
    ("crashing", "expected"),
    [
        (
            "b",
            [
                ("crash", "b"),
                ("stop", "d"),
                ("stop", "c"),
                ("start", "b"),
                ("start", "c"),
                ("start", "d"),
            ],
        ),
        ("d", [("crash", "d"), ("start", "d")]),
    ],
)
async def test_rest_for_one_restarts_the_child_and_those_started_after_it(
    autojump_clock: trio.testing.MockClock,
    script: Script,
    crashing: str,
    expected: list[tuple[str, str]],
) -> None:
    children = [
        script.spec(name, *((script.crash(1.0), script.forever()) if name == crashing else ()))
        for name in "abcd"
    ]
    spec = SupervisorSpec("s", children, strategy=Strategy.REST_FOR_ONE)
    async with open_supervisor(spec):
        await trio.sleep(2)
        during = script.events("start", "stop", "crash")

    initial = [("start", name) for name in "abcd"]
    assert during == initial + expected
    assert script.starts("a") == 1


async def test_a_temporary_sibling_stopped_by_one_for_all_is_not_restarted(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec(
        "s",
        [
            script.spec("helper", restart=Restart.TEMPORARY),
            script.spec("main", script.crash(1.0), script.forever()),
        ],
        strategy=Strategy.ONE_FOR_ALL,
    )
    async with open_supervisor(spec) as supervisor:
        await trio.sleep(2)
        stats = supervisor.statistics()
    assert script.starts("helper") == 1
    assert script.starts("main") == 2
    assert stats.child_restarts == (("main", 1),)


@pytest.mark.parametrize(
    ("restart", "ending", "restarted"),
    [
        (Restart.PERMANENT, "finish", True),
        (Restart.PERMANENT, "crash", True),
        (Restart.TRANSIENT, "finish", False),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TEMPORARY, "finish", False),
        (Restart.TEMPORARY, "crash", False),
    ],
)
async def test_restart_types(
    autojump_clock: trio.testing.MockClock,
    script: Script,
    restart: Restart,
    ending: str,
    restarted: bool,
) -> None:
    step = script.crash(1.0) if ending == "crash" else script.finish(1.0)
    spec = SupervisorSpec(
        "s", [script.spec("anchor"), script.spec("worker", step, script.forever(), restart=restart)]
    )
    async with open_supervisor(spec) as supervisor:
        await trio.sleep(2)
        names = [name for name, _ in supervisor.statistics().child_restarts]

    assert script.times("start", "worker") == ([0.0, 1.0] if restarted else [0.0])
    assert names == (["anchor", "worker"] if restarted else ["anchor"])


async def test_run_returns_once_no_child_is_left_to_run(
    autojump_clock: trio.testing.MockClock, script: Script, run_to_end: RunToEnd
) -> None:
    spec = SupervisorSpec(
        "s",
        [
            script.spec("done", script.finish(1.0), restart=Restart.TRANSIENT),
            script.spec("once", script.crash(2.0), restart=Restart.TEMPORARY),
        ],
    )
    await run_to_end(Supervisor(spec))
    assert trio.current_time() == 2.0


async def test_without_auto_shutdown_run_outlives_its_children(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec(
        "pool",
        [script.spec("job", script.finish(1.0), restart=Restart.TRANSIENT)],
        auto_shutdown=False,
    )
    async with open_supervisor(spec) as supervisor:
        await trio.sleep(5)
        assert supervisor.statistics().running == 0
        await supervisor.start_child(script.spec("late"))
        assert supervisor.statistics().running == 1


async def test_a_failed_start_is_a_crash_and_later_children_wait_for_it(
    autojump_clock: trio.testing.MockClock, script: Script, events: list[SupervisorEvent]
) -> None:
    spec = SupervisorSpec(
        "s",
        [
            script.spec("a"),
            script.spec("b", script.fail_start(init=1.0), script.fail_start(), script.forever()),
            script.spec("c"),
        ],
        intensity=Intensity(max_restarts=2, period=5.0),
    )
    async with open_supervisor(spec, on_event=events.append) as supervisor:
        ready_at = trio.current_time()
        stats = supervisor.statistics()

    assert ready_at == 1.0
    assert script.events("start", "fail_start") == [
        ("start", "a"),
        ("fail_start", "b"),
        ("fail_start", "b"),
        ("start", "b"),
        ("start", "c"),
    ]
    assert stats.child_restarts == (("a", 0), ("b", 2), ("c", 0))
    exits = [(e.child, e.reason) for e in events if e.kind is EventKind.EXIT]
    assert exits == [("b", "RuntimeError('b start #1')"), ("b", "RuntimeError('b start #2')")]


async def test_failing_starts_escalate_before_the_supervisor_is_ready(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec(
        "s", [script.spec("a"), script.spec("b", script.fail_start()), script.spec("c")]
    )
    with pytest.raises(SupervisorEscalation, match=re.escape("RuntimeError('b start #2')")):
        async with open_supervisor(spec):
            pytest.fail("the body must not run when the supervisor cannot start")
    assert script.events("start", "stop") == [("start", "a"), ("stop", "a")]


async def test_returning_before_started_is_a_failed_start(
    autojump_clock: trio.testing.MockClock, script: Script, run_to_end: RunToEnd
) -> None:
    spec = SupervisorSpec("s", [script.spec("a", script.return_early())])
    expected = "RuntimeError(\"child 'a' returned without calling task_status.started()\")"
    with pytest.raises(SupervisorEscalation, match=re.escape(expected)):
        await run_to_end(Supervisor(spec))


async def test_an_exception_group_from_a_childs_own_nursery_is_a_crash(
    autojump_clock: trio.testing.MockClock, events: list[SupervisorEvent]
) -> None:
    starts = 0

    async def fail(after: float) -> None:
        await trio.sleep(after)
        raise ValueError(f"after {after}")

    async def parent(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal starts
        starts += 1
        task_status.started()
        if starts == 1:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fail, 1.0)
                nursery.start_soon(fail, 1.0)
        await trio.sleep_forever()

    spec = SupervisorSpec("s", [ChildSpec("parent", parent)])
    async with open_supervisor(spec, on_event=events.append):
        await trio.sleep(2)
    assert starts == 2
    [exit_event] = [e for e in events if e.kind is EventKind.EXIT]
    assert exit_event.at == 1.0
    assert exit_event.reason is not None
    assert exit_event.reason.startswith("ExceptionGroup(")


async def test_backoff_delays_grow_exponentially_up_to_the_maximum(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    spec = SupervisorSpec(
        "s",
        [
            script.spec("a"),
            script.spec("b", *[script.fail_start()] * 5, script.forever()),
            script.spec("c"),
        ],
        intensity=Intensity(max_restarts=10, period=100.0),
        backoff=Backoff(initial=1.0, maximum=4.0, multiplier=2.0, jitter=0.0),
    )
    async with open_supervisor(spec):
        ready_at = trio.current_time()

    # Delays 1, 2, 4, 4, 4; c waits for b because children start in order.
    assert script.times("init", "b") == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0]
    assert script.times("start", "c") == [15.0]
    assert ready_at == 15.0


async def test_backoff_count_resets_after_a_stable_run(
    autojump_clock: trio.testing.MockClock, script: Script, events: list[SupervisorEvent]
) -> None:
    crash = script.crash
    spec = SupervisorSpec(
        "s",
        [script.spec("b", crash(0.5), crash(0.5), crash(20.0), crash(0.5), script.forever())],
        intensity=Intensity(max_restarts=10, period=100.0),
        backoff=Backoff(initial=1.0, maximum=8.0, jitter=0.0, reset_after=10.0),
    )
    async with open_supervisor(spec, on_event=events.append):
        await trio.sleep(30)

    assert script.times("start", "b") == [0.0, 1.5, 4.0, 25.0, 27.5]
    assert [e.delay for e in events if e.kind is EventKind.RESTART] == [1.0, 2.0, 1.0, 2.0]


async def _jittered_delays(seed: int, script: Script, name: str) -> list[float]:
    events: list[SupervisorEvent] = []
    spec = SupervisorSpec(
        "s",
        [script.spec(name, *[script.crash(0.0)] * 8, script.forever())],
        intensity=Intensity(max_restarts=10, period=100.0),
        backoff=Backoff(initial=1.0, maximum=1.0, multiplier=1.0, jitter=0.5),
    )
    async with open_supervisor(spec, on_event=events.append, rng=random.Random(seed)):
        await trio.sleep(20)
    restarts = [e for e in events if e.kind is EventKind.RESTART]
    starts = [e.at for e in events if e.kind is EventKind.START]
    # Each restart happens exactly its announced delay after the crash.
    assert [s - r.at for r, s in zip(restarts, starts[1:], strict=True)] == pytest.approx(
        [r.delay for r in restarts]
    )
    return [r.delay for r in restarts if r.delay is not None]


async def test_backoff_jitter_is_bounded_and_reproducible_with_a_seed(
    autojump_clock: trio.testing.MockClock, script: Script
) -> None:
    first = await _jittered_delays(7, script, "first")
    again = await _jittered_delays(7, script, "again")
    other = await _jittered_delays(8, script, "other")

    assert len(first) == 8
    assert all(0.5 <= delay <= 1.5 for delay in first + other)
    assert len(set(first)) == 8  # really random, not a constant factor
    assert again == first
    assert other != first
