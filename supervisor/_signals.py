"""Turn SIGINT/SIGTERM into an orderly stop of a supervision tree.

Run ``stop_on_signals`` next to the root supervisor: the first signal cancels the given
scope, the supervisors inside it stop their children in reverse start order within their
shutdown timeouts, and the process exits. The handlers are restored as soon as the first
signal arrives, so a second Ctrl-C falls back to trio's ``KeyboardInterrupt``: an impatient
operator can still force the exit.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable

import trio

logger = logging.getLogger("volta.supervisor")


async def stop_on_signals(
    cancel_scope: trio.CancelScope,
    signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> signal.Signals:
    """Wait for one of ``signals``, then cancel ``cancel_scope``.

    Start it with ``await nursery.start(stop_on_signals, scope)``: once started, the signals
    are caught. Typically ``scope`` is the cancel scope of the nursery that runs both this
    task and the root supervisor, so cancelling it stops this task as well.

    Args:
        cancel_scope: What to cancel when a signal arrives.
        signals: The signals to catch.
        task_status: From ``nursery.start``; ``started()`` is called once the handlers are in.

    Returns:
        The signal that arrived.

    Raises:
        RuntimeError: If not called from the main thread (a limit of Python signals).
    """
    with trio.open_signal_receiver(*signals) as received:
        task_status.started()
        async for number in received:
            caught = signal.Signals(number)
            break
    logger.info("received %s: stopping in order", caught.name)
    cancel_scope.cancel()
    return caught
