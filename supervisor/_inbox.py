"""What a supervisor's control loop receives: child exits and requests from other tasks.

Everything that changes a supervisor goes through this one inbox, so a single task (the
control loop) owns the supervisor's state and decisions happen in a well-defined order.
"""

from __future__ import annotations

import attrs
import trio

from ._child import ChildInstance, ChildRecord
from ._spec import ChildSpec


@attrs.define(eq=False)
class Reply:
    """Answer to a ``start_child``/``stop_child`` request, handed back across tasks."""

    _done: trio.Event = attrs.Factory(trio.Event)
    _error: BaseException | None = None

    def succeed(self) -> None:
        """Answer that the request was carried out."""
        self._done.set()

    def fail(self, error: BaseException) -> None:
        """Answer with an error for the caller, unless already answered."""
        if not self._done.is_set():
            self._error = error
            self._done.set()

    async def wait(self) -> None:
        """Wait for the answer.

        Raises:
            BaseException: The error the request was answered with.
        """
        await self._done.wait()
        if self._error is not None:
            raise self._error


@attrs.define(eq=False)
class Exited:
    """A started child finished (sent by its host task)."""

    record: ChildRecord
    instance: ChildInstance


@attrs.define(eq=False)
class StartChild:
    """``Supervisor.start_child`` asks for a new child."""

    spec: ChildSpec
    reply: Reply = attrs.Factory(Reply)


@attrs.define(eq=False)
class StopChild:
    """``Supervisor.stop_child`` asks to stop and forget a child."""

    name: str
    reply: Reply = attrs.Factory(Reply)


Message = Exited | StartChild | StopChild
