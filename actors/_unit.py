"""The unit of work: one message, or one capability call, an agent handles for a task.

A *task* is what a caller wants done; a *unit* is one agent's share of it. Everything
a unit is, from arrival to answer, lives here; the inbox and the capability responder
only carry it (decode the payload, call :meth:`Units.run`, send the :data:`Outcome`).
:meth:`Units.run`

- takes the task context the work came with (``metadata.task`` of a message, ``task``
  of a capability request) or starts a new task for it; the agent's own
  ``task_timeout`` and ``task_budget`` bound every unit, whatever the wire says, and a
  broadcast has a budget of 0 (one message to every agent must not set every brain
  thinking);
- refuses work the task forbids before it begins (a loop, too deep, a passed
  deadline) and work whose task context is malformed (``bad_request``);
- runs the handler under a cancel scope whose deadline is the task's, registered with
  the node's :class:`~volta.actors.TaskRegistry` so ``task.cancel`` reaches
  it, with :data:`CURRENT_TASK` set so everything the handler sends carries the task
  and draws on its :class:`Budget`;
- publishes its progress (started, answered, failed, cancelled, refused) and counts
  how it ended, the same way for messages and capability calls;
- and returns one :data:`Outcome`: :class:`Answered` with the value and what it
  spent, or :class:`Failed` with an :class:`~volta.protocol.ErrorCode`, words, what
  it spent and, when the actor itself is broken (:class:`AgentFault`), the fault to
  crash with once the sender has its answer.

A unit fails alone: a handler that raises fails its unit (counted, logged at a
bounded rate, answered); a Volta error it raises (a ``HandlerError``, or an ask or a
capability call of its own that failed) fails it with that error's code and words;
only :class:`AgentFault` is also a fault of the actor.

The budget: a unit may spend its task's ``budget`` (its own model calls and its
delegates' together). :class:`Budget` has one way in, :meth:`Budget.reserve` (an
allowance for a delegate, out of what is left), and one way out, the reservation's
:meth:`Reservation.settle` (the delegate answered and said what it spent: the rest
comes back) or :meth:`Reservation.forfeit` (nobody will say: the whole allowance
counts as spent). Delegations that name no allowance split :data:`DELEGATE_SHARE`
of what is left, for brains and Python handlers alike.
"""

from __future__ import annotations

import contextvars
import enum
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import attrs
import trio

from volta.core import RateLimitedLog
from volta.protocol import (
    TASK_CODEC,
    ErrorCode,
    ProgressKind,
    ProtocolError,
    TaskContext,
    TaskRefused,
    VoltaError,
)

from ._cancel import RunningUnit, TaskRegistry
from ._handler import AgentFault
from ._journal import Journal

log = logging.getLogger("volta.actors.unit")

DELEGATE_SHARE = 0.5
"""The share of what a unit has left that the delegations it starts together split
when they do not name their allowance: an ``ask``, ``send`` or ``request_capability``
on its own takes half of what is left; the delegating tool calls of one brain turn
split half of it between them. The other half stays with the unit for its own work
(the model call that reads the answers) and later delegations."""

MAX_WORDS = 1000
"""Longest words of a failure (characters); longer ones are cut."""
_DETAIL = 200  # characters of a started/answered progress event's detail


# --- the budget ------------------------------------------------------------------------


@attrs.define
class Budget:
    """The tokens of one unit: its allowance, what it spent, what it has handed out."""

    allowance: int | None
    """What the unit may spend in all, its delegates included (None: no limit)."""
    _spent: int = 0
    _reserved: int = 0

    @property
    def spent(self) -> int:
        """Spent by the unit itself and, as they reported, by its finished delegates."""
        return self._spent

    @property
    def reserved(self) -> int:
        """Handed out to delegates that have not answered yet."""
        return self._reserved

    def available(self) -> int | None:
        """What is left to spend or hand out (None: no limit)."""
        if self.allowance is None:
            return None
        return max(0, self.allowance - self._spent - self._reserved)

    def charge(self, tokens: int) -> None:
        """Count tokens the unit spent itself (a model call's usage)."""
        self._spent += max(0, tokens)

    def share(self, among: int = 1) -> int | None:
        """What each of ``among`` delegations started together gets when none names its
        allowance: :data:`DELEGATE_SHARE` of what is left, split (None: no limit)."""
        available = self.available()
        if available is None:
            return None
        return int(available * DELEGATE_SHARE / max(1, among))

    def reserve(self, amount: int | None = None) -> Reservation:
        """Hand a delegate an allowance: ``amount`` tokens (no more than is left), or
        :meth:`share` when None. It is settled or forfeited when the delegate is done.

        Raises:
            TaskRefused: ``budget_exceeded``: a limited budget has nothing left to give.
        """
        available = self.available()
        if amount is not None:
            amount = max(0, amount)
            if available is not None:
                amount = min(amount, available)
        elif available is not None:
            amount = self.share()
        if self.allowance is not None and not amount:
            raise TaskRefused(
                ErrorCode.BUDGET_EXCEEDED,
                f"the task's budget is spent ({self._spent} of {self.allowance} tokens)",
            )
        self._reserved += amount or 0
        return Reservation(amount, self)

    def _close(self, reservation: Reservation, spent: int) -> None:
        amount = reservation.amount
        if amount is not None:
            self._reserved -= amount
            spent = min(spent, amount)  # a delegate cannot spend more than it was given
        self._spent += max(0, spent)


@attrs.define(eq=False)
class Reservation:
    """An allowance handed to one delegate. It is closed once: by :meth:`settle` or
    :meth:`forfeit`; later calls change nothing."""

    amount: int | None
    """The allowance (None: no limit, nothing held back)."""
    _budget: Budget = attrs.field(repr=False)
    _open: bool = True

    @property
    def open(self) -> bool:
        """Whether it is still held (neither settled nor forfeited)."""
        return self._open

    def settle(self, spent: int) -> None:
        """The delegate is done and says it spent ``spent``: that much counts (at most
        the allowance), the rest comes back."""
        if self._open:
            self._open = False
            self._budget._close(self, spent)

    def forfeit(self) -> None:
        """Nobody will say what the delegate spent (a plain message, a timeout, a
        cancellation): the whole allowance counts as spent."""
        self.settle(self.amount or 0)


# --- the unit running now ----------------------------------------------------------------


@attrs.define
class TaskScope:
    """The unit of work now running: its task context, its budget, its agent."""

    context: TaskContext
    """The context it was started with (``chain`` ends with the sender)."""
    agent: str
    """The agent running the unit."""
    budget: Budget
    """Its tokens."""
    traced: bool = True
    """Whether its progress is published (``task.<id>.progress``)."""
    journal: Journal | None = None
    """What it already did, when its message may come again (``_journal.py``): a
    brain takes model replies and tool results from there instead of again."""

    @property
    def chain(self) -> tuple[str, ...]:
        """The chain as this unit sees it: the incoming chain and this agent."""
        return (*self.context.chain, self.agent)


CURRENT_TASK: contextvars.ContextVar[TaskScope | None] = contextvars.ContextVar(
    "volta.actors.current_task", default=None
)
"""The unit of work the current trio task belongs to (set by :meth:`Units.run`)."""


# --- work and outcomes ---------------------------------------------------------------------


class WorkKind(enum.Enum):
    """What arrived."""

    MESSAGE = "message"
    """A message on the agent's inbox (direct or broadcast)."""
    CAPABILITY = "capability"
    """A capability call on one of its endpoints."""


_INTERRUPTED = {
    WorkKind.MESSAGE: "interrupted: the inbox stopped",
    WorkKind.CAPABILITY: "interrupted: the capability responder is restarting",
}


@attrs.frozen
class Work:
    """One piece of work as it arrived, before it became a unit."""

    kind: WorkKind
    """A message or a capability call."""
    sender: str
    """Who sent it: the first of the chain of a task it starts."""
    task: object
    """The raw task context from the wire (None: absent)."""
    label: str
    """What logs call it (``message <id>``, ``capability word_count``)."""
    summary: str = ""
    """What its ``started`` progress event says."""
    broadcast: bool = False
    """It came to every agent (budget 0)."""

    @classmethod
    def message(
        cls, sender: str, message_id: str, text: str, task: object, *, broadcast: bool
    ) -> Work:
        """A message (``task``: its ``metadata.task``)."""
        return cls(
            WorkKind.MESSAGE, sender, task, f"message {message_id}", text[:_DETAIL], broadcast
        )

    @classmethod
    def capability(cls, sender: str, name: str, task: object) -> Work:
        """A capability call (``sender``: a fresh anonymous caller; ``task``: its ``task``)."""
        return cls(WorkKind.CAPABILITY, sender, task, f"capability {name}", f"capability {name}")


def _words(value: object) -> str:
    text = str(value)
    return text if len(text) <= MAX_WORDS else f"{text[: MAX_WORDS - 3]}..."


@attrs.frozen
class Answered:
    """The unit did its work."""

    value: Any
    """What the handler returned (a message's answer text or None, a capability's result)."""
    spent: int | None
    """Tokens it spent, delegates included, when it came with a task (its answer says so);
    None otherwise."""


@attrs.frozen
class Failed:
    """The unit did not do its work."""

    code: ErrorCode
    """Why, as a protocol code."""
    message: str = attrs.field(converter=_words)
    """Words about it (cut to :data:`MAX_WORDS` characters)."""
    spent: int | None = None
    """Tokens it spent before it failed, when it came with a task; None otherwise."""
    fault: AgentFault | None = None
    """The actor's own fault: crash with it once the sender has its answer."""
    refused: bool = False
    """Nothing ran: the task forbade the work, or its context was malformed."""
    quiet: bool = False
    """Not to be answered: a refusal beyond the error answers the transport allows."""


Outcome: TypeAlias = Answered | Failed
"""How a unit ended."""


# --- counters ------------------------------------------------------------------------------


@attrs.frozen
class UnitStatistics:
    """What the units of one kind came to (messages, or capability calls)."""

    received: int
    """Work that reached the unit (well-formed payloads)."""
    answered: int
    """Units that did their work."""
    failed: int
    """Units that ran and failed (handler errors, deadlines, cancellations, timeouts)."""
    handler_errors: int
    """Of those, the handler raised (an error code of its own, or anything else)."""
    refused: int
    """Work refused before it began because its task forbade it."""
    malformed: int
    """Work refused before it began because its task context was malformed."""
    in_flight: int
    """Units running now."""


@attrs.define
class _Counters:
    received: int = 0
    answered: int = 0
    failed: int = 0
    handler_errors: int = 0
    refused: int = 0
    malformed: int = 0
    in_flight: int = 0

    def snapshot(self) -> UnitStatistics:
        return UnitStatistics(**attrs.asdict(self))


# --- running units ---------------------------------------------------------------------------

Progress = Callable[[ProgressKind, str, TaskScope], Awaitable[None]]
"""Publishes a progress event of a unit (the agent context's ``progress``)."""


@attrs.frozen
class UnitLimits:
    """What an agent allows any one unit, whatever its task says."""

    task_timeout: float | None = None
    """Seconds a unit may run (the latest deadline; None: the task's alone)."""
    task_budget: int | None = None
    """Tokens a unit may spend, delegates included (None: the task's alone)."""
    trace: bool = False
    """Publish the progress of units that came without a task too."""


class Units:
    """The units of one agent: how each begins, runs and ends (the module docstring)."""

    def __init__(
        self,
        agent: str,
        limits: UnitLimits,
        progress: Progress,
        registry: TaskRegistry | None = None,
        report_interval: float = 10.0,
    ) -> None:
        self._agent = agent
        self._limits = limits
        self._progress = progress
        self._registry = registry
        self._log = RateLimitedLog(log, report_interval)
        self._counters = {kind: _Counters() for kind in WorkKind}

    def statistics(self, kind: WorkKind) -> UnitStatistics:
        """The counters of one kind of work, as they are now."""
        return self._counters[kind].snapshot()

    def in_flight(self, kind: WorkKind) -> int:
        """Units of that kind running now."""
        return self._counters[kind].in_flight

    def context_of(self, work: Work) -> tuple[TaskContext, bool]:
        """The task context of a unit, and whether it came from the wire (see the
        module docstring for the agent's own limits).

        Raises:
            ProtocolError: the work's task is present but malformed (its field reads
                ``metadata.task.<...>`` for a message, ``task.<...>`` for a capability
                call).
        """
        limits = self._limits
        budget = 0 if work.broadcast else limits.task_budget
        if work.task is None:
            root = TaskContext.root(work.sender, timeout=limits.task_timeout, budget=budget)
            return root, False
        if work.kind is WorkKind.MESSAGE:
            try:
                context = TASK_CODEC.from_dict(work.task, "metadata.task")
            except ProtocolError as error:
                raise error.about("message") from None
        else:
            context = TASK_CODEC.from_dict(work.task, "task")
        if budget is not None and (context.budget is None or context.budget > budget):
            context = attrs.evolve(context, budget=budget)
        if limits.task_timeout is not None:
            latest = datetime.now(UTC) + timedelta(seconds=limits.task_timeout)
            if context.deadline is None or context.deadline > latest:
                context = attrs.evolve(context, deadline=latest)
        return context, True

    async def run(
        self,
        work: Work,
        handle: Callable[[], Awaitable[Any]],
        *,
        interrupted: Callable[[Failed], Awaitable[None]],
        admit_refusal: Callable[[], bool] | None = None,
        timeout: float | None = None,
        journal: Journal | None = None,
    ) -> Outcome:
        """Run one unit (see the module docstring).

        Args:
            work: what arrived.
            handle: calls the handler (inside the unit: its task is current).
            interrupted: answers the unit's sender when the transport itself is stopped
                while the unit runs (the child is cancelled from outside); shielded.
            admit_refusal: asked before a refusal is said out loud (its progress event,
                and the error answer); False: it is only counted (``quiet``). None:
                always said.
            timeout: seconds the handler may take (``timeout`` when it does not finish).
            journal: what the unit did before, if its message may come again; a
                unit that did some of its work before says ``resumed`` as it starts.
        """
        counters = self._counters[work.kind]
        counters.received += 1
        try:
            task, from_wire = self.context_of(work)
        except ProtocolError as error:
            counters.malformed += 1
            quiet = admit_refusal is not None and not admit_refusal()
            return Failed(ErrorCode.BAD_REQUEST, str(error), refused=True, quiet=quiet)
        refusal = task.refusal(self._agent) if from_wire else None
        if refusal is not None:
            counters.refused += 1
            if admit_refusal is not None and not admit_refusal():
                return Failed(refusal.code, refusal.message, refused=True, quiet=True)
            scope = TaskScope(task, self._agent, Budget(task.budget))
            await self._progress(ProgressKind.REFUSED, refusal.message, scope)
            return Failed(refusal.code, refusal.message, refused=True)
        scope = TaskScope(
            task,
            self._agent,
            Budget(task.budget),
            traced=from_wire or self._limits.trace,
            journal=journal,
        )
        counters.in_flight += 1
        try:
            outcome = await self._run(work, scope, from_wire, handle, interrupted, timeout)
        finally:
            counters.in_flight -= 1
        if isinstance(outcome, Answered):
            counters.answered += 1
            await self._progress(ProgressKind.ANSWERED, _result(outcome.value), scope)
        else:
            counters.failed += 1
            kind = (
                ProgressKind.CANCELLED
                if outcome.code is ErrorCode.CANCELLED
                else ProgressKind.FAILED
            )
            await self._progress(kind, outcome.message, scope)
        return outcome

    async def _run(
        self,
        work: Work,
        scope: TaskScope,
        from_wire: bool,
        handle: Callable[[], Awaitable[Any]],
        interrupted: Callable[[Failed], Awaitable[None]],
        timeout: float | None,
    ) -> Outcome:
        counters = self._counters[work.kind]
        budget = scope.budget

        def spent() -> int | None:  # said only to a caller that holds a reservation
            return budget.spent if from_wire else None

        failure: tuple[ErrorCode, str] | None = None
        fault: AgentFault | None = None
        value: Any = None
        with self._running(scope) as (cancel_scope, running):
            await self._progress(ProgressKind.STARTED, work.summary, scope)
            if scope.journal is not None and scope.journal.resumed:
                await self._progress(
                    ProgressKind.RESUMED, "from its journal: work done before is not redone", scope
                )
            try:
                with trio.move_on_after(math.inf if timeout is None else timeout) as bounded:
                    value = await handle()
                if bounded.cancelled_caught:
                    failure = (ErrorCode.TIMEOUT, f"no result within {timeout:g} s")
            except TaskRefused as error:  # the task's rules, met while it ran
                failure = (error.code, error.message)
            except VoltaError as error:  # a code of its own, or a call it made that failed
                counters.handler_errors += 1
                failure = (error.code, error.message)
            except Exception as error:
                counters.handler_errors += 1
                self._log.warning(
                    work.kind.value,
                    f"{work.kind.value} failures",
                    "agent %s: %s failed: %r",
                    self._agent,
                    work.label,
                    error,
                )
                failure = (ErrorCode.AGENT_ERROR, repr(error))
                if isinstance(error, AgentFault):
                    fault = error
            except BaseException:
                # A cancellation (perhaps grouped by a nursery in the handler) that is not
                # the unit's own deadline or cancel: the transport is stopping.
                if not cancel_scope.cancel_called:
                    words = _INTERRUPTED[work.kind]
                    await interrupted(Failed(ErrorCode.AGENT_ERROR, words, spent()))
                raise
        if cancel_scope.cancelled_caught:  # the unit's own end comes first
            if running is not None and running.reason is not None:
                failure = (ErrorCode.CANCELLED, running.reason)
            else:
                failure = (
                    ErrorCode.DEADLINE_EXCEEDED,
                    f"the task's deadline passed while {self._agent} worked on it",
                )
        if failure is not None:
            return Failed(failure[0], failure[1], spent(), fault)
        return Answered(value, spent())

    @contextmanager
    def _running(self, scope: TaskScope) -> Iterator[tuple[trio.CancelScope, RunningUnit | None]]:
        """The block as the unit: under the task's deadline, cancellable by
        ``task.cancel``, with the unit current."""
        remaining = scope.context.remaining()
        deadline = math.inf if remaining is None else trio.current_time() + remaining
        cancel_scope = trio.CancelScope(deadline=deadline)
        registered = (
            self._registry.running(scope.context, cancel_scope)
            if self._registry is not None
            else nullcontext()
        )
        with registered as running:
            token = CURRENT_TASK.set(scope)
            try:
                with cancel_scope:
                    yield cancel_scope, running
            finally:
                CURRENT_TASK.reset(token)


def _result(value: object) -> str:
    """An answer or result, for an ``answered`` progress event."""
    if value is None or isinstance(value, str):
        return (value or "")[:_DETAIL]
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text[:_DETAIL]
