"""The supervisor: starts children in order, restarts them by policy, stops them in order.

Structure. ``Supervisor.run`` owns one nursery. Each child runs in its own host task there,
inside its own cancel scope. One control loop (the task that called ``run``) makes every
decision: it starts children, handles their exits, serves ``start_child``/``stop_child``
requests and applies the restart policy, so the supervisor's state has a single writer.

Stopping, and what a shutdown timeout means. trio cannot kill a task. A started child's
scope is shielded, so cancelling the supervisor's caller reaches only the control loop,
which then stops the children one at a time in reverse start order. Stopping a child:

1. its stop deadline is set to now + ``ChildSpec.shutdown_timeout`` and its scope is
   cancelled, so the child gets ``trio.Cancelled`` at its next checkpoint;
2. cleanup that must await runs inside ``shutdown_scope()``, a shielded scope with that
   same deadline; unshielded awaits in ``finally:`` are cancelled at once;
3. the supervisor waits for the child until the deadline. If the child is still running
   then, a ``SHUTDOWN_TIMEOUT`` event is published; by then the deadline has already
   cancelled the shielded cleanup, so a well-behaved child finishes immediately. The
   supervisor still waits for it to finish (there is no stronger stop in trio, and two
   live copies of one child would be worse); only a child that swallows ``Cancelled`` can
   hold it up, and the event says which one.

Exits. A child's ``Exception`` (an ``ExceptionGroup`` of them included) is a crash; a
return is a normal exit; anything else (``Cancelled``, ``KeyboardInterrupt``) propagates
through the nursery as trio intends, after the other children have been stopped in order.
A child that raises (or returns) before calling ``task_status.started()`` failed to start,
which counts as a crash, except for ``start_child``, which reports it to its caller.
"""

from __future__ import annotations

import functools
import itertools
import math
import random

import attrs
import trio

from ._child import ChildInstance, ChildRecord, host_child
from ._escalation import IntensityWindow, SupervisorEscalation
from ._events import EventKind, EventPublisher, EventSink
from ._inbox import Exited, Message, StartChild, StopChild
from ._schedule import StartSchedule
from ._spec import ChildSpec, Restart, Strategy, SupervisorSpec

_SHARED_RNG = random.Random()


@attrs.frozen
class SupervisorStatistics:
    """A snapshot of a supervisor, for metrics and tests.

    Attributes:
        name: Name of the supervisor.
        running: Children started and not finished.
        waiting: Children waiting for their (re)start, during a backoff for instance.
        restarts: Restart decisions so far in this run (what the intensity limit counts).
        child_restarts: ``(name, restarts)`` for each current child, in start order; a
            one-for-all restart counts once for every child it restarts.
    """

    name: str
    running: int
    waiting: int
    restarts: int
    child_restarts: tuple[tuple[str, int], ...]


class Supervisor:
    """Runs a ``SupervisorSpec``: see the module docstring for the semantics.

    A ``Supervisor`` can be run again after ``run`` returned or raised (a parent supervisor
    restarting it does exactly that); each run starts from the spec with fresh counters.
    """

    def __init__(
        self,
        spec: SupervisorSpec,
        *,
        on_event: EventSink | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Create a supervisor; nothing runs until ``run`` is called.

        Args:
            spec: The children and the restart policy.
            on_event: Receives every ``SupervisorEvent``; exceptions it raises are logged.
            rng: Source of backoff jitter; pass a seeded ``random.Random`` for repeatability.
        """
        self._spec = spec
        self._events = EventPublisher(spec.name, on_event)
        # The module's shared generator unless one is given: a Random per supervisor
        # costs 2.5 KiB, and a node has one supervisor per agent.
        self._rng = rng if rng is not None else _SHARED_RNG
        self._running = False
        self._reset()

    def _reset(self) -> None:
        self._children: dict[str, ChildRecord] = {}  # in start order
        self._schedule = StartSchedule()
        self._order = itertools.count()
        self._window = IntensityWindow(self._spec.intensity)
        self._restarts = 0
        self._nursery: trio.Nursery | None = None
        self._inbox: trio.MemorySendChannel[Message] | None = None
        self._accepting = False
        self._in_flight: StartChild | StopChild | None = None

    @property
    def spec(self) -> SupervisorSpec:
        """What it runs, and its restart policy."""
        return self._spec

    @property
    def name(self) -> str:
        """The supervisor's name."""
        return self._spec.name

    def statistics(self) -> SupervisorStatistics:
        """Take a snapshot of the children and restart counts of the current (or last) run.

        Returns:
            The snapshot.
        """
        children = self._children.values()
        return SupervisorStatistics(
            name=self.name,
            running=sum(1 for record in children if record.running),
            waiting=len(self._schedule),
            restarts=self._restarts,
            child_restarts=tuple((record.name, record.restarts) for record in children),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order and supervise them.

        Calls ``task_status.started()`` once every initial child is running (or finished for
        good). If cancelled, stops the children in reverse start order, each within its
        ``shutdown_timeout``, then lets ``Cancelled`` propagate.

        Raises:
            SupervisorEscalation: The restart intensity was exceeded; all children have been
                stopped in reverse start order first.
            RuntimeError: This supervisor is already running.
            BaseExceptionGroup: A child raised something that is not an ``Exception``; the
                other children were stopped in order first.
        """
        if self._running:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._running = True
        self._reset()
        send, receive = trio.open_memory_channel[Message](math.inf)
        escalation: SupervisorEscalation | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery, self._inbox, self._accepting = nursery, send, True
                try:
                    await self._serve(receive, task_status)
                except SupervisorEscalation as exc:
                    # Raised below, outside the nursery, so callers get it bare.
                    escalation = exc
                finally:
                    self._accepting = False
                    with trio.CancelScope(shield=True):
                        await self._stop_all()
        finally:
            # Every host task has finished: nothing can send any more.
            self._answer_leftovers(receive)
            send.close()
            receive.close()
            self._running, self._nursery, self._inbox = False, None, None
        if escalation is not None:
            raise escalation

    async def start_child(self, spec: ChildSpec) -> None:
        """Add a child after the others and wait until it is ready.

        As in OTP, a child that fails before calling ``task_status.started()`` is not kept
        and not restarted; its exception is raised here instead. Do not call this from a
        child's own initialisation: the supervisor is waiting for that child.

        Args:
            spec: The new child; its name must not be in use.

        Raises:
            ValueError: A child with that name exists.
            RuntimeError: The supervisor is not running, or stopped before the child started.
            Exception: Whatever the child raised before it was ready.
        """
        request = StartChild(spec)
        self._submit(request)
        await request.reply.wait()

    async def stop_child(self, name: str) -> None:
        """Stop a child (within its shutdown timeout) and forget it; it is not restarted.

        Args:
            name: The child's name.

        Raises:
            KeyError: No child has that name.
            RuntimeError: The supervisor is not running.
        """
        request = StopChild(name)
        self._submit(request)
        await request.reply.wait()

    def _submit(self, request: StartChild | StopChild) -> None:
        if not self._accepting or self._inbox is None:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        self._inbox.send_nowait(request)

    async def _serve(
        self, receive: trio.MemoryReceiveChannel[Message], task_status: trio.TaskStatus[None]
    ) -> None:
        now = trio.current_time()
        for spec in self._spec.children:
            self._schedule.add(self._add(spec), now)
        ready = False
        while True:
            await self._start_due()
            if not ready and not self._schedule:
                ready = True
                task_status.started()
            if ready and self._spec.auto_shutdown and not self._children:
                return
            message: Message | None = None
            with trio.move_on_at(self._schedule.next_due()):
                message = await receive.receive()
            if message is not None:
                await self._handle(message)

    async def _handle(self, message: Message) -> None:
        if isinstance(message, Exited):
            record, instance = message.record, message.instance
            # Exits the control loop already dealt with (stops, earlier runs) are stale.
            current = self._children.get(record.name) is record and record.current is instance
            if current and not instance.handled:
                await self._after_exit(record, instance.error)
            return
        self._in_flight = message
        if isinstance(message, StartChild):
            await self._start_requested(message)
        else:
            await self._stop_requested(message)
        self._in_flight = None

    async def _start_requested(self, request: StartChild) -> None:
        spec = request.spec
        if spec.name in self._children:
            request.reply.fail(
                ValueError(f"supervisor {self.name!r} already has a child named {spec.name!r}")
            )
            return
        record = self._add(spec)
        error = await self._launch(record)
        if error is None:
            request.reply.succeed()
            return
        self._events.publish(EventKind.EXIT, spec.name, restarts=0, error=error)
        self._remove(record)
        request.reply.fail(error)

    async def _stop_requested(self, request: StopChild) -> None:
        record = self._children.get(request.name)
        if record is None:
            request.reply.fail(KeyError(f"supervisor {self.name!r} has no child {request.name!r}"))
            return
        self._schedule.discard(record)
        await self._stop(record)
        self._remove(record)
        request.reply.succeed()

    def _answer_leftovers(self, receive: trio.MemoryReceiveChannel[Message]) -> None:
        # Requests that arrived while stopping: a start cannot happen any more; a stop has
        # happened, since every child has been stopped.
        pending: list[Message] = [] if self._in_flight is None else [self._in_flight]
        while True:
            try:
                pending.append(receive.receive_nowait())
            except (trio.WouldBlock, trio.ClosedResourceError):
                break
        for message in pending:
            if isinstance(message, StartChild):
                message.reply.fail(RuntimeError(f"supervisor {self.name!r} stopped"))
            elif isinstance(message, StopChild):
                message.reply.succeed()

    def _add(self, spec: ChildSpec) -> ChildRecord:
        record = ChildRecord(spec, order=next(self._order))
        self._children[spec.name] = record
        return record

    def _remove(self, record: ChildRecord) -> None:
        self._schedule.discard(record)
        if self._children.get(record.name) is record:
            del self._children[record.name]

    async def _start_due(self) -> None:
        while (record := self._schedule.pop_due(trio.current_time())) is not None:
            error = await self._launch(record)
            if error is not None:
                await self._after_exit(record, error)
                # A child that fails before it is ready never lets a cancellation in
                # (its start hands back the error): without this checkpoint a child
                # failing at once, restarted at once, would keep a stopping
                # supervisor from ever seeing its stop.
                await trio.lowlevel.checkpoint()

    async def _launch(self, record: ChildRecord) -> Exception | None:
        assert self._nursery is not None
        instance = record.new_instance(trio.current_time())
        on_exit = functools.partial(self._report_exit, record)
        error: Exception | None = await self._nursery.start(
            host_child, record.spec, instance, self._nursery, on_exit
        )
        if error is not None:
            instance.handled = True
            return error
        record.started_at = trio.current_time()
        self._events.publish(EventKind.START, record.name, restarts=record.restarts)
        return None

    def _report_exit(self, record: ChildRecord, instance: ChildInstance) -> None:
        if self._inbox is not None:
            self._inbox.send_nowait(Exited(record, instance))

    async def _after_exit(self, record: ChildRecord, error: Exception | None) -> None:
        """Apply the restart policy to a child that exited or failed to start.

        Raises:
            SupervisorEscalation: The restart would exceed the intensity.
        """
        if record.current is not None:
            record.current.handled = True
        self._events.publish(EventKind.EXIT, record.name, restarts=record.restarts, error=error)
        if not record.spec.restart.wants_restart(error):
            self._remove(record)
            return
        now = trio.current_time()
        if not self._window.admit(now, record.name):
            escalation = SupervisorEscalation(
                self.name,
                record.name,
                error,
                restarts=self._window.restarts,
                child_failures=self._window.restarts_of(record.name),
                intensity=self._spec.intensity,
            )
            self._events.publish(
                EventKind.ESCALATION,
                record.name,
                restarts=record.restarts,
                error=error,
                reason=str(escalation),
            )
            raise escalation from error
        self._restarts += 1
        delay = self._backoff_delay(record, now)
        self._events.publish(
            EventKind.RESTART,
            record.name,
            restarts=record.restarts + 1,
            reason=None if error is None else repr(error),  # the EXIT event logged the traceback
            delay=delay,
        )
        group = self._restart_group(record)
        for sibling in reversed(group):
            if sibling is not record:
                await self._stop(sibling)
        # The backoff runs from the moment the affected siblings have stopped.
        due = trio.current_time() + delay
        for member in group:
            if member is not record and member.spec.restart is Restart.TEMPORARY:
                self._remove(member)
            else:
                self._schedule.add(member, due)
        # Children that never started wait too: a child starts for the first time only once
        # the children before it are ready, whatever the strategy.
        for waiting in self._schedule:
            waiting_due = self._schedule.due(waiting)
            later = waiting.launches == 0 and waiting.order > record.order
            if later and waiting_due is not None and waiting_due < due:
                self._schedule.add(waiting, due)

    def _restart_group(self, record: ChildRecord) -> list[ChildRecord]:
        strategy = self._spec.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [record]
        children = list(self._children.values())
        if strategy is Strategy.ONE_FOR_ALL:
            return children
        return children[children.index(record) :]

    def _backoff_delay(self, record: ChildRecord, crashed_at: float) -> float:
        backoff = self._spec.backoff
        if backoff is None:
            return 0.0
        if crashed_at - record.started_at >= backoff.reset_after:
            record.failures_in_a_row = 0
        record.failures_in_a_row += 1
        return backoff.delay(record.failures_in_a_row, self._rng)

    async def _stop(self, record: ChildRecord) -> None:
        """Stop a running child, bounded by its shutdown timeout (see module docstring)."""
        instance = record.current
        if instance is None or instance.handled or not instance.started:
            return
        if not instance.done.is_set():
            if instance.clock.deadline is None:  # not already being stopped
                instance.clock.deadline = trio.current_time() + record.spec.shutdown_timeout
                instance.scope.cancel()
            with trio.move_on_at(instance.clock.deadline) as waiting:
                await instance.done.wait()
            if waiting.cancelled_caught:
                self._events.publish(
                    EventKind.SHUTDOWN_TIMEOUT,
                    record.name,
                    restarts=record.restarts,
                    reason=f"still running {record.spec.shutdown_timeout} s after the stop began",
                )
                await instance.done.wait()
        instance.handled = True
        self._events.publish(
            EventKind.STOP, record.name, restarts=record.restarts, error=instance.error
        )

    async def _stop_all(self) -> None:
        try:
            for record in reversed(list(self._children.values())):
                await self._stop(record)
        finally:
            # Only does something if stopping in order failed: the nursery must still close.
            for record in self._children.values():
                if record.current is not None and not record.current.done.is_set():
                    record.current.scope.cancel()
