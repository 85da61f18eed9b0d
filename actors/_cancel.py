"""Cancelling a task, or one branch of it, on every agent it reached.

Every node listens on ``task.cancel`` (no queue group) for
``{"task": "<id>", "span": "<span>", "reason": "..."}`` and cancels each unit of
that task, on any of its agents, whose spans include ``span``: the unit that span
names and everything it started, however deep. A client that gives up on a task
cancels its first span; an ``ask`` that is cancelled cancels the span it started.
Cancelled units answer ``cancelled`` (docs/PROTOCOL.md, section 5.11).

The :class:`TaskRegistry` is the node's table of running units (``Units.run``
registers each one); the node's canceller feeds it from the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import trio

from volta.protocol import CancelRequest, TaskContext

log = logging.getLogger("volta.actors.cancel")


@attrs.define(eq=False)
class RunningUnit:
    """One unit of a task running on this node."""

    spans: tuple[str, ...]
    scope: trio.CancelScope
    reason: str | None = None
    """Why it was cancelled (None: it was not)."""


class TaskRegistry:
    """The units of work running on a node, by task id."""

    def __init__(self) -> None:
        self._units: dict[str, list[RunningUnit]] = {}
        self.cancelled = 0
        """Units cancelled so far."""

    def __len__(self) -> int:
        return sum(len(units) for units in self._units.values())

    @contextmanager
    def running(self, context: TaskContext, scope: trio.CancelScope) -> Iterator[RunningUnit]:
        """Register a unit for the duration of the block."""
        unit = RunningUnit(context.spans, scope)
        units = self._units.setdefault(context.id, [])
        units.append(unit)
        try:
            yield unit
        finally:
            units.remove(unit)
            if not units:
                self._units.pop(context.id, None)

    def cancel(self, request: CancelRequest) -> int:
        """Cancel the matching units; how many there were."""
        count = 0
        for unit in self._units.get(request.task, ()):
            if request.span in unit.spans and unit.reason is None:
                unit.reason = request.reason or "cancelled by the caller"
                unit.scope.cancel()
                count += 1
        self.cancelled += count
        return count
