"""The node child that applies ``task.cancel`` to the node's running units.

Every node listens on ``task.cancel`` (no queue group): a cancellation reaches every
unit of the task, on any node (docs/PROTOCOL.md 5.11). The units themselves are in
the node's :class:`~volta.actors.TaskRegistry`.
"""

from __future__ import annotations

import logging

import trio

from volta.actors import TaskRegistry
from volta.bus import Bus, Delivery, Subscription
from volta.core import RateLimitedLog
from volta.protocol import CANCEL_CODEC, TASK_CANCEL, CancelRequest, ProtocolError

log = logging.getLogger("volta.node.cancel")


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
