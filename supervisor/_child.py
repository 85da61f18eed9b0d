"""One child at runtime: its record across restarts, and the task that hosts each instance.

The host task stands between the supervisor's nursery and the child's function: it turns
``Exception`` exits into reports instead of letting them tear down the nursery, gives the
child its own cancel scope, and tells the supervisor whether the start succeeded. Anything
that is not an ``Exception`` (``trio.Cancelled``, ``KeyboardInterrupt``) passes through.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from ._shutdown import CURRENT_SHUTDOWN_CLOCK, ShutdownClock
from ._spec import ChildSpec


@attrs.define(eq=False)
class ChildInstance:
    """One run of a child, from its start to its exit.

    Attributes:
        clock: Shutdown deadline of this run, read by ``shutdown_scope()``.
        scope: Cancel scope around the child; cancelling it is how the child is stopped.
        done: Set when the child's function has returned or raised.
        started: Whether the child called ``task_status.started()``.
        handled: Whether the supervisor has dealt with this run's exit (or its failed start).
        error: The ``Exception`` the child raised, if any.
    """

    clock: ShutdownClock
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    done: trio.Event = attrs.Factory(trio.Event)
    started: bool = False
    handled: bool = False
    error: Exception | None = None


@attrs.define(eq=False)
class ChildRecord:
    """A child across its restarts, owned by the supervisor's control loop.

    Attributes:
        spec: What to run.
        order: Position in start order; later children have larger numbers.
        current: The latest run, or None before the first start.
        launches: How many times the child has been started (successfully or not).
        restarts: How many of those launches were restarts.
        failures_in_a_row: Consecutive restarts, for the backoff.
        started_at: When the latest run was launched, then when it became ready.
    """

    spec: ChildSpec
    order: int
    current: ChildInstance | None = None
    launches: int = 0
    restarts: int = 0
    failures_in_a_row: int = 0
    started_at: float = 0.0

    @property
    def name(self) -> str:
        """The child's name."""
        return self.spec.name

    @property
    def running(self) -> bool:
        """Whether the child has started and not finished."""
        current = self.current
        return current is not None and current.started and not current.done.is_set()

    def new_instance(self, now: float) -> ChildInstance:
        """Prepare the next run of the child.

        Args:
            now: ``trio.current_time()`` of the launch.

        Returns:
            The new run, now ``current``.
        """
        if self.launches:
            self.restarts += 1
        self.launches += 1
        self.started_at = now
        self.current = ChildInstance(ShutdownClock(self.spec.shutdown_timeout))
        return self.current


class ChildTaskStatus(trio.TaskStatus[object]):
    """The ``task_status`` a child sees: it also shields the child once it is started.

    Once started, a child must stop only when its supervisor stops it, in order, never
    because the supervisor's caller was cancelled; so its scope is shielded as soon as it
    moves into the supervisor's nursery, and the supervisor cancels it explicitly.
    """

    def __init__(
        self,
        real: trio.TaskStatus[Exception | None],
        instance: ChildInstance,
        nursery: trio.Nursery,
        host: trio.lowlevel.Task,
    ) -> None:
        self._real = real
        self._instance = instance
        self._nursery = nursery
        self._host = host
        self.called = False

    def started(self, value: object = None) -> None:
        """Report the child ready; the value is ignored.

        Raises:
            RuntimeError: If called twice.
        """
        if self.called:
            raise RuntimeError("called 'started' twice on the same task status")
        self.called = True
        # Shield before moving, so the cancel status that moves under the supervisor's
        # nursery can never pick up a cancellation meant for the supervisor itself.
        self._instance.scope.shield = True
        self._real.started(None)
        if self._host.parent_nursery is not self._nursery:
            # trio did not move the task because the start was cancelled (the supervisor is
            # being stopped): let the child see that cancellation and end.
            self._instance.scope.shield = False
        self._instance.started = True


async def host_child(
    spec: ChildSpec,
    instance: ChildInstance,
    nursery: trio.Nursery,
    on_exit: Callable[[ChildInstance], None],
    *,
    task_status: trio.TaskStatus[Exception | None],
) -> None:
    """Run one instance of a child inside the supervisor's nursery.

    Started with ``nursery.start``: the start returns None once the child is ready, or the
    child's exception if it raised (or returned) before calling ``task_status.started()``.
    A started child's exit is reported through ``on_exit``.

    Args:
        spec: The child to run.
        instance: Per-run state; filled in here.
        nursery: The supervisor's nursery, where the task lives once started.
        on_exit: Called with ``instance`` when a started child finishes.
        task_status: From ``nursery.start``.

    Raises:
        BaseException: Anything the child raises that is not an ``Exception``.
    """
    CURRENT_SHUTDOWN_CLOCK.set(instance.clock)
    status = ChildTaskStatus(task_status, instance, nursery, trio.lowlevel.current_task())
    try:
        with instance.scope:
            await spec.start(task_status=status)
    except Exception as exc:
        instance.error = exc
    finally:
        instance.done.set()
    if not status.called:
        error = instance.error or RuntimeError(
            f"child {spec.name!r} returned without calling task_status.started()"
        )
        task_status.started(error)
        return
    on_exit(instance)
