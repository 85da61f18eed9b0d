"""The unit of work running now: its task context, its ledger, its agent.

While a unit runs, :data:`CURRENT_TASK` holds its :class:`TaskScope`; the agent
context reads it to stamp outgoing messages and to bound their waits.
"""

from __future__ import annotations

import contextvars

import attrs

from volta.protocol import TaskContext


@attrs.define
class Ledger:
    """The tokens of one unit: its allowance, what it spent, what it has handed out."""

    allowance: int | None
    """What the unit may spend in all, its delegates included (None: no limit)."""
    spent: int = 0
    """Spent by the unit itself and, as they reported, by its finished delegates."""
    reserved: int = 0
    """Handed out to delegates that have not answered yet."""

    def available(self) -> int | None:
        """What is left to spend or hand out (None: no limit)."""
        if self.allowance is None:
            return None
        return max(0, self.allowance - self.spent - self.reserved)

    def charge(self, tokens: int) -> None:
        """Count tokens the unit spent itself."""
        self.spent += max(0, tokens)

    def reserve(self, share: float = 1.0) -> int | None:
        """Hand out ``share`` of what is available to a delegate; the amount reserved."""
        available = self.available()
        if available is None:
            return None
        amount = int(available * share)
        self.reserved += amount
        return amount

    def settle(self, reserved: int | None, spent: int) -> None:
        """A delegate answered (or failed): give back its reservation, count what it spent."""
        if reserved is not None:
            self.reserved -= reserved
            spent = min(spent, reserved)  # a delegate cannot spend more than it was given
        self.spent += max(0, spent)


@attrs.define
class TaskScope:
    """The unit of work now running: its task context, its ledger, its agent."""

    context: TaskContext
    """The context it was started with (``chain`` ends with the sender)."""
    agent: str
    """The agent running the unit."""
    ledger: Ledger
    """Its tokens."""
    traced: bool = True
    """Whether its progress is published (``task.<id>.progress``)."""

    @property
    def chain(self) -> tuple[str, ...]:
        """The chain as this unit sees it: the incoming chain and this agent."""
        return (*self.context.chain, self.agent)


CURRENT_TASK: contextvars.ContextVar[TaskScope | None] = contextvars.ContextVar(
    "volta.actors.current_task", default=None
)
"""The unit of work the current trio task belongs to (set by the inbox for its handler)."""
