"""Cancelling a task, or one branch of it, on every agent it reached.

Every node listens on ``task.cancel`` (no queue group) for
``{"task": "<id>", "span": "<span>", "reason": "..."}`` and cancels each unit of
that task, on any of its agents, whose spans include ``span``: the unit that span
names and everything it started, however deep. A client that gives up on a task
cancels its first span; an ``ask`` that is cancelled cancels the span it started.
Cancelled units answer ``cancelled`` (docs/PROTOCOL.md, section 5.11).

The :class:`TaskRegistry` is the node's table of running units; the
:class:`CancelListener` is the node child that feeds it from the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import trio

from volta.bus import Bus, Delivery, Subscription
from volta.core import RateLimitedLog
from volta.protocol import CANCEL_CODEC, TASK_CANCEL, CancelRequest, ProtocolError, TaskContext

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


class CancelListener:
    """The node child that applies ``task.cancel`` to the node's running units."""

    def __init__(self, registry: TaskRegistry, bus: Bus) -> None:
        self._registry = registry
        self._bus = bus
        self._log = RateLimitedLog(log, bus.options.report_interval)
        self.malformed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled."""
        async with self._bus.subscribe(TASK_CANCEL) as requests:
            await self._bus.flush()
            task_status.started()
            await self._listen(requests)

    async def _malformed(self, _delivery: Delivery, _error: ProtocolError) -> None:
        self.malformed += 1

    async def _listen(self, requests: Subscription) -> None:
        async for _delivery, request in requests.decoded(_decode, on_malformed=self._malformed):
            count = self._registry.cancel(request)
            if count:
                self._log.info(
                    "cancel",
                    "cancellations",
                    "task %s: cancelled %d unit(s): %s",
                    request.task,
                    count,
                    request.reason,
                )


def _decode(delivery: Delivery) -> CancelRequest:
    return CANCEL_CODEC.decode(delivery.data)
