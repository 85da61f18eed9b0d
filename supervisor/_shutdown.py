"""Bounded cleanup for children being stopped.

trio cannot kill a task: stopping a child means cancelling its cancel scope, and the child
decides what its ``finally:`` blocks do. Cleanup that has to await (flush a buffer, say
goodbye on the bus) must shield itself from that cancellation, and a shield with no deadline
could hang a shutdown forever. ``shutdown_scope()`` is the one way to do it here: a shielded
scope whose deadline is the child's shutdown deadline::

    async def worker(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await serve()
        finally:
            with shutdown_scope():
                await say_goodbye()  # cancelled if it outlives the shutdown_timeout
"""

from __future__ import annotations

import contextvars

import attrs
import trio

DEFAULT_SHUTDOWN_TIMEOUT = 5.0
"""Seconds allowed to cleanup that runs outside any supervisor (and ChildSpec's default)."""


@attrs.define
class ShutdownClock:
    """When the current instance of a child has to be finished with its cleanup.

    Attributes:
        timeout: The child's shutdown timeout in seconds.
        deadline: Set by the supervisor when it starts stopping the child; None until then.
    """

    timeout: float
    deadline: float | None = None


CURRENT_SHUTDOWN_CLOCK: contextvars.ContextVar[ShutdownClock] = contextvars.ContextVar(
    "volta.supervisor.shutdown_clock"
)
"""Set by the supervisor in each child's task; the child's own subtasks inherit it."""


def shutdown_scope() -> trio.CancelScope:
    """Open a shielded cancel scope bounded by the current child's shutdown deadline.

    Inside a child that the supervisor is stopping, the deadline is the moment the stop began
    plus the child's ``shutdown_timeout``. Inside a child that is not being stopped (it
    crashed or returned on its own) it is now plus that timeout. Outside any supervisor it is
    now plus ``DEFAULT_SHUTDOWN_TIMEOUT``.

    Returns:
        A new ``trio.CancelScope(shield=True)`` with that deadline; use it as ``with``.

    Raises:
        RuntimeError: If called outside ``trio.run``.
    """
    clock = CURRENT_SHUTDOWN_CLOCK.get(None)
    if clock is None:
        deadline = trio.current_time() + DEFAULT_SHUTDOWN_TIMEOUT
    elif clock.deadline is None:
        deadline = trio.current_time() + clock.timeout
    else:
        deadline = clock.deadline
    return trio.CancelScope(shield=True, deadline=deadline)
