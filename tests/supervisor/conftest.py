"""Scripted children for supervisor tests.

A ``Script`` (fixture ``script``) hands out child start functions that follow a plan (one
``Step`` per start, the last step repeating; build steps with ``script.crash(1.0)`` and
friends, so tests never import this conftest) and records what each child does in one log,
stamped with ``trio.current_time()``, so tests can assert exact sequences and exact times.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio

from volta.supervisor import ChildSpec, Restart, Supervisor, SupervisorEvent, shutdown_scope

RunToEnd = Callable[[Supervisor], Awaitable[None]]
"""The type of the ``run_to_end`` fixture."""


@attrs.frozen
class Step:
    """What a child does on one of its starts.

    Attributes:
        kind: "forever", "crash", "finish", "fail_start" or "return_early".
        after: Seconds before crashing or finishing.
        cleanup: Seconds of cleanup inside shutdown_scope() when stopped (inf: hang).
        init: Seconds of initialisation before started().
    """

    kind: str
    after: float = 0.0
    cleanup: float = 0.0
    init: float = 0.0


class Script:
    """Makes scripted children and keeps their shared log."""

    def __init__(self) -> None:
        self.log: list[tuple[float, str, str]] = []
        self._starts: dict[str, int] = {}

    @staticmethod
    def forever(*, cleanup: float = 0.0, init: float = 0.0) -> Step:
        return Step("forever", cleanup=cleanup, init=init)

    @staticmethod
    def crash(after: float, *, init: float = 0.0) -> Step:
        return Step("crash", after=after, init=init)

    @staticmethod
    def finish(after: float) -> Step:
        return Step("finish", after=after)

    @staticmethod
    def fail_start(*, init: float = 0.0) -> Step:
        return Step("fail_start", init=init)

    @staticmethod
    def return_early() -> Step:
        return Step("return_early")

    def record(self, what: str, name: str) -> None:
        self.log.append((trio.current_time(), what, name))

    def events(self, *whats: str) -> list[tuple[str, str]]:
        """(what, name) in order, optionally only for some kinds of entries."""
        return [(what, name) for _, what, name in self.log if not whats or what in whats]

    def times(self, what: str, name: str) -> list[float]:
        return [at for at, w, n in self.log if (w, n) == (what, name)]

    def starts(self, name: str) -> int:
        return len(self.times("start", name))

    def start_fn(self, name: str, *steps: Step) -> Callable[..., Awaitable[None]]:
        plan = steps or (Step("forever"),)

        async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            number = self._starts[name] = self._starts.get(name, 0) + 1
            step = plan[min(number, len(plan)) - 1]
            self.record("init", name)
            await trio.sleep(step.init)
            if step.kind == "fail_start":
                self.record("fail_start", name)
                raise RuntimeError(f"{name} start #{number}")
            if step.kind == "return_early":
                return
            task_status.started()
            self.record("start", name)
            try:
                if step.kind == "forever":
                    await trio.sleep_forever()
                await trio.sleep(step.after)
            except trio.Cancelled:
                self.record("stop", name)
                if step.cleanup:
                    with shutdown_scope() as scope:
                        await trio.sleep(step.cleanup)
                    self.record("cut" if scope.cancelled_caught else "cleaned", name)
                raise
            if step.kind == "crash":
                self.record("crash", name)
                raise RuntimeError(f"{name} crash #{number}")
            self.record("finish", name)

        return child

    def spec(
        self,
        name: str,
        *steps: Step,
        restart: Restart = Restart.PERMANENT,
        shutdown_timeout: float = 5.0,
    ) -> ChildSpec:
        return ChildSpec(
            name, self.start_fn(name, *steps), restart=restart, shutdown_timeout=shutdown_timeout
        )


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def events() -> list[SupervisorEvent]:
    """A list to pass as on_event=events.append."""
    return []


@pytest.fixture
def run_to_end() -> RunToEnd:
    """Run a supervisor that must end by itself (escalate or run out of children).

    The virtual-time bound turns a bug that keeps it running into a failure, not a hang.
    """

    async def run(supervisor: Supervisor) -> None:
        with trio.fail_after(1_000):
            await supervisor.run()

    return run
