"""Nurseries for context managers whose lone errors should come out bare.

A context manager that runs background tasks (``run_nats_server``, ``open_bus``,
``open_supervisor``) holds a nursery across its ``yield``; with trio's strict
exception groups, any error of the caller's block would come out wrapped in an
``ExceptionGroup``. Callers expect ``except ConnectFailed`` or
``pytest.raises(ValueError)`` to work, so a group holding exactly one exception is
unwrapped here. Groups of several errors stay groups: nothing is hidden.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import trio


@contextmanager
def unwrap_lone_exception() -> Iterator[None]:
    """Re-raise a group that holds (through nesting) a single exception as that exception."""
    try:
        yield
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if isinstance(error, BaseExceptionGroup):
            raise
        # Keep the error's own cause; do not show the group as its context.
        error.__suppress_context__ = True
        raise error from error.__cause__


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    """``trio.open_nursery()``, with a lone exception raised by itself."""
    with unwrap_lone_exception():
        async with trio.open_nursery() as nursery:
            yield nursery
