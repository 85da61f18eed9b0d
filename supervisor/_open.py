"""``open_supervisor``: a supervisor for the duration of an ``async with`` block."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ._events import EventSink
from ._spec import SupervisorSpec
from ._supervisor import Supervisor


@asynccontextmanager
async def open_supervisor(
    spec: SupervisorSpec,
    *,
    on_event: EventSink | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the duration of an ``async with`` block.

    Enters once every initial child is ready; on exit, stops the children in reverse start
    order. If the supervisor escalates while the body runs, the body is cancelled and the
    ``SupervisorEscalation`` comes out of the ``async with`` bare, so a plain
    ``except SupervisorEscalation`` works; likewise a single exception from the body comes
    out bare. Only if several errors happen at once (the body fails while the supervisor
    escalates) do they come out together as an ``ExceptionGroup``; non-``Exception``
    errors (``KeyboardInterrupt``) keep trio's ``BaseExceptionGroup``.

    Args:
        spec: The supervisor to run.
        on_event: Receives every ``SupervisorEvent``.
        rng: Source of backoff jitter.

    Yields:
        The running ``Supervisor``, for ``start_child``, ``stop_child`` and ``statistics``.

    Raises:
        SupervisorEscalation: The supervisor gave up, before or after the body started.
    """
    supervisor = Supervisor(spec, on_event=on_event, rng=rng)
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            yield supervisor
            nursery.cancel_scope.cancel()
    except ExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        error = group.exceptions[0]
    if error is not None:
        # Raised here, outside the ``except``, so the error keeps its own __context__.
        raise error
