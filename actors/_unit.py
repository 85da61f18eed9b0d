"""One unit of work: a message (or a capability call) an agent handles for a task.

The inbox and the capability responder both run their handler inside
:func:`running_unit`, which

- takes the task context the work came with (``metadata.task`` of a message, the
  ``task`` of a capability request) or starts a new task for it (the agent's own
  ``task_timeout`` and ``task_budget``),
- refuses to start when the task forbids it (:meth:`TaskContext.refusal`: a loop,
  too deep, a passed deadline),
- runs the handler under a cancel scope whose deadline is the task's, registered
  with the node's :class:`~volta.actors._cancel.TaskRegistry` so ``task.cancel``
  reaches it, with :data:`~volta.actors._task.CURRENT_TASK` set so everything the
  handler sends carries the task,
- and says afterwards why it was cut short, if it was.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import trio

from volta.protocol import TASK_CODEC, ErrorCode, ProtocolError, TaskContext

from ._cancel import RunningUnit, TaskRegistry
from ._task import CURRENT_TASK, Ledger, TaskScope


def unit_context(
    task: object,
    sender: str,
    *,
    timeout: float | None,
    budget: int | None,
    broadcast: bool = False,
) -> tuple[TaskContext, bool]:
    """The task context of a unit, and whether it came from the wire.

    The agent's own limits bound every unit, whatever the wire says: its
    ``task_timeout`` is the latest deadline and its ``task_budget`` the largest
    budget a unit gets, and a broadcast has a budget of 0 (one message to every
    agent must not set every brain thinking).

    Args:
        task: the ``metadata.task`` (or request ``task``) value, None when absent.
        sender: who sent the work (the first of the chain of a new task).
        timeout: the agent's longest unit, in seconds (None: no limit).
        budget: the agent's largest budget for one task (None: no limit).
        broadcast: the work came as a broadcast.

    Raises:
        ProtocolError: ``task`` is present but malformed.
    """
    if broadcast:
        budget = 0
    if task is None:
        return TaskContext.root(sender, timeout=timeout, budget=budget), False
    context = TASK_CODEC.from_dict(task, "task")
    if budget is not None and (context.budget is None or context.budget > budget):
        context = attrs.evolve(context, budget=budget)
    if timeout is not None:
        latest = datetime.now(UTC) + timedelta(seconds=timeout)
        if context.deadline is None or context.deadline > latest:
            context = attrs.evolve(context, deadline=latest)
    return context, True


@attrs.define
class Unit:
    """A unit running (or just finished)."""

    scope: TaskScope
    cancel_scope: trio.CancelScope
    running: RunningUnit | None

    def cut_short(self) -> tuple[ErrorCode, str] | None:
        """Why the unit was stopped before it was done (None: it was not)."""
        if not self.cancel_scope.cancelled_caught:
            return None
        if self.running is not None and self.running.reason is not None:
            return ErrorCode.CANCELLED, self.running.reason
        return (
            ErrorCode.DEADLINE_EXCEEDED,
            f"the task's deadline passed while {self.scope.agent} worked on it",
        )


@contextmanager
def running_unit(
    context: TaskContext,
    agent_id: str,
    registry: TaskRegistry | None,
    *,
    traced: bool,
) -> Iterator[Unit]:
    """Run the block as a unit of ``context`` (see the module docstring)."""
    remaining = context.remaining()
    deadline = math.inf if remaining is None else trio.current_time() + remaining
    cancel_scope = trio.CancelScope(deadline=deadline)
    scope = TaskScope(context, agent_id, Ledger(context.budget), traced=traced)
    registered = registry.running(context, cancel_scope) if registry is not None else nullcontext()
    with registered as running:
        unit = Unit(scope, cancel_scope, running)
        token = CURRENT_TASK.set(scope)
        try:
            with cancel_scope:
                yield unit
        finally:
            CURRENT_TASK.reset(token)


def task_of(metadata: Mapping[str, Any]) -> object:
    """The raw task value of a message's metadata (None when absent)."""
    return metadata.get("task")


def describe_protocol_error(error: ProtocolError) -> str:
    """A task decode error, as the sender should read it."""
    return f"invalid message: metadata.{error.field}: {error.reason}"
