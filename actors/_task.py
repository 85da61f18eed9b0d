"""The task a message belongs to: trace id, chain, deadline, budget; and its progress.

A *task* is what a caller wants done; a *unit* is one agent's share of it (handling
one message). Every message an agent sends on behalf of a unit carries the task's
context in ``metadata.task`` (docs/PROTOCOL.md, section 5.10)::

    {"id": "<task id>", "spans": ["<s0>", "<s1>"], "chain": ["cli-7f3a", "coordinator"],
     "deadline": "2026-12-01T08:30:00.000000Z", "budget": 12000, "max_depth": 8}

- ``chain``: the agents (and the client) the task passed through, the sender last.
  An agent never handles a task that has already passed through it (``loop_detected``)
  nor one whose chain is ``max_depth`` long (``too_deep``).
- ``spans``: one id per hop, the last one naming the unit this message starts.
  Cancelling a span (``task.cancel``) cancels that unit and everything it started.
- ``deadline``: after it nobody starts work on the task, and work in progress stops.
- ``budget``: the tokens the receiving unit may spend, its delegates included. A
  unit hands each delegate an allowance out of what it has left, and gets back what
  the delegate did not spend (its answer says how much it spent, ``metadata.usage``),
  so a task never spends more than its budget however many agents it fans out to.

While a unit runs, :data:`CURRENT_TASK` holds its :class:`TaskScope`; the agent
context reads it to stamp outgoing messages and to bound their waits.
"""

from __future__ import annotations

import contextvars
import enum
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import trio

from volta.bus import format_timestamp, parse_timestamp, validate_own_agent_id

from ._protocol import ProtocolError, dump_json, load_json_object

TASK_CANCEL = "task.cancel"
"""Where cancellations go: ``{"task": id, "span": s, "reason": ...}`` (every node listens)."""

DEFAULT_MAX_DEPTH = 8
"""Agents (and the client) a task may pass through, counting the first."""
MAX_CHAIN = 64
"""Longest chain or span list accepted from the wire."""
MAX_DETAIL = 500
"""Longest ``detail`` of a progress event (characters)."""
MAX_THREAD_ID = 64
"""Longest ``metadata.thread_id`` (characters)."""
MAX_TIMEOUT = 7 * 24 * 3600.0
"""Longest timeout of a task started here, in seconds (a week)."""
MAX_BUDGET = 10**12
"""Largest token budget accepted from the wire."""

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_id() -> str:
    """A fresh task or span id: 32 hex digits."""
    return uuid.uuid4().hex


def anonymous_caller() -> str:
    """A name for a caller that did not say who it is (a capability request without a
    task): fresh each time, so it can never be mistaken for an agent on a chain."""
    return f"anon-{uuid.uuid4().hex[:16]}"


def progress_subject(task_id: str) -> str:
    """Where the progress of one task is published: ``task.<id>.progress``."""
    return f"task.{task_id}.progress"


PROGRESS_ALL = "task.*.progress"
"""Every task's progress (for dashboards)."""


class TaskRefusal(enum.Enum):
    """Why an agent would not start on a task."""

    LOOP_DETECTED = "loop_detected"
    TOO_DEEP = "too_deep"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    BUDGET_EXCEEDED = "budget_exceeded"


class TaskRefused(Exception):
    """A call on behalf of a task was refused before it was made (a tool error for a brain).

    Attributes:
        code: why (``loop_detected``, ``too_deep``, ``deadline_exceeded``, ``budget_exceeded``).
        message: words about it.
    """

    def __init__(self, code: TaskRefusal, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


def _tokens(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_CHAIN:
        raise ProtocolError(field, f"expected a list of 1-{MAX_CHAIN} ids")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _TOKEN.fullmatch(item):
            raise ProtocolError(
                f"{field}[{index}]", "expected 1-64 characters from A-Z a-z 0-9 _ -"
            )
    return tuple(value)


@attrs.frozen
class TaskContext:
    """What travels in ``metadata.task``: see the module docstring."""

    id: str
    """The task id (also its progress subject's token)."""
    spans: tuple[str, ...]
    """One id per hop; the last names the unit the message starts."""
    chain: tuple[str, ...]
    """The agents (and the client) the task passed through, the sender last."""
    deadline: datetime | None = None
    """When work on the task must be over (UTC); None: no deadline."""
    budget: int | None = None
    """Tokens the receiving unit may spend, delegates included; None: no limit."""
    max_depth: int = DEFAULT_MAX_DEPTH
    """Longest chain allowed."""

    @classmethod
    def new(
        cls,
        *,
        timeout: float | None = None,
        budget: int | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
        task_id: str | None = None,
    ) -> TaskContext:
        """A task started here, by code that is not an agent's unit (a client): it has
        passed through nobody yet, so its chain and spans are empty."""
        root = cls.root("x", timeout=timeout, budget=budget, max_depth=max_depth, task_id=task_id)
        return attrs.evolve(root, spans=(), chain=())

    @classmethod
    def root(
        cls,
        sender: str,
        *,
        timeout: float | None = None,
        budget: int | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
        task_id: str | None = None,
    ) -> TaskContext:
        """A new task for work that reached an agent from ``sender`` without a context.

        Raises:
            ValueError: ``timeout`` is not a number of seconds from 0 to ``MAX_TIMEOUT``.
        """
        deadline = None
        if timeout is not None:
            if not 0 <= timeout <= MAX_TIMEOUT:  # (NaN fails too)
                raise ValueError(f"a task's timeout must be 0 to {MAX_TIMEOUT:,} seconds")
            deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        return cls(
            id=task_id or new_id(),
            spans=(new_id(),),
            chain=(sender,),
            deadline=deadline,
            budget=budget,
            max_depth=max_depth,
        )

    @property
    def span(self) -> str:
        """The span of the unit this context starts (empty for :meth:`new`)."""
        return self.spans[-1] if self.spans else ""

    @property
    def parent_span(self) -> str | None:
        """The span of the unit that sent it (None for the first message of a task)."""
        return self.spans[-2] if len(self.spans) > 1 else None

    def remaining(self) -> float | None:
        """Seconds until the deadline (negative once passed), or None."""
        if self.deadline is None:
            return None
        return (self.deadline - datetime.now(UTC)).total_seconds()

    def trio_deadline(self) -> float:
        """The deadline on trio's clock (``inf`` if none)."""
        remaining = self.remaining()
        return math.inf if remaining is None else trio.current_time() + remaining

    def refusal(self, agent_id: str) -> TaskRefused | None:
        """Why ``agent_id`` must not start on this task, or None."""
        if agent_id in self.chain:
            path = " -> ".join((*self.chain, agent_id))
            return TaskRefused(
                TaskRefusal.LOOP_DETECTED,
                f"the task has already passed through {agent_id!r} ({path})",
            )
        if len(self.chain) >= self.max_depth:
            return TaskRefused(
                TaskRefusal.TOO_DEEP,
                f"the task has passed through {len(self.chain)} agents, the most it may "
                f"(max_depth {self.max_depth})",
            )
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            return TaskRefused(
                TaskRefusal.DEADLINE_EXCEEDED, f"its deadline passed {-remaining:.3f} s ago"
            )
        return None

    def delegate(self, sender: str, budget: int | None) -> TaskContext:
        """The context of a message ``sender`` (this unit's agent) sends for the task."""
        return attrs.evolve(
            self, spans=(*self.spans, new_id()), chain=(*self.chain, sender), budget=budget
        )

    def to_metadata(self) -> dict[str, Any]:
        """The JSON-ready form."""
        document: dict[str, Any] = {
            "id": self.id,
            "spans": list(self.spans),
            "chain": list(self.chain),
            "max_depth": self.max_depth,
        }
        if self.deadline is not None:
            document["deadline"] = format_timestamp(self.deadline)
        if self.budget is not None:
            document["budget"] = self.budget
        return document

    @classmethod
    def from_metadata(cls, value: object) -> TaskContext:
        """Decode ``metadata.task``.

        Raises:
            ProtocolError: it is malformed (the field names the key: ``task.chain[1]``).
        """
        if not isinstance(value, Mapping):
            raise ProtocolError("task", "expected a JSON object")
        task_id = value.get("id")
        if not isinstance(task_id, str) or not _TOKEN.fullmatch(task_id):
            raise ProtocolError("task.id", "expected 1-64 characters from A-Z a-z 0-9 _ -")
        spans = _tokens(value.get("spans"), "task.spans")
        chain = _tokens(value.get("chain"), "task.chain")
        for index, agent_id in enumerate(chain):
            try:
                validate_own_agent_id(agent_id)  # ("broadcast" is nobody: never on a chain)
            except ValueError as error:
                raise ProtocolError(f"task.chain[{index}]", str(error)) from None
        if len(spans) != len(chain):
            raise ProtocolError("task.spans", "expected as many spans as agents in the chain")
        deadline = value.get("deadline")
        if deadline is not None:
            if not isinstance(deadline, str):
                raise ProtocolError("task.deadline", "expected a timestamp string")
            try:
                deadline = parse_timestamp(deadline)
            except ValueError as error:
                raise ProtocolError("task.deadline", str(error)) from None
        budget = value.get("budget")
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= MAX_BUDGET
        ):
            raise ProtocolError("task.budget", f"expected an integer from 0 to {MAX_BUDGET}")
        max_depth = value.get("max_depth", DEFAULT_MAX_DEPTH)
        if (
            isinstance(max_depth, bool)
            or not isinstance(max_depth, int)
            or not 1 <= max_depth <= MAX_CHAIN
        ):
            raise ProtocolError("task.max_depth", f"expected an integer from 1 to {MAX_CHAIN}")
        return cls(task_id, spans, chain, deadline, budget, max_depth)


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


def usage_metadata(spent: int) -> dict[str, Any]:
    """What an answer says about the tokens its unit spent (``metadata.usage``)."""
    return {"tokens": spent}


def spent_from(metadata: Mapping[str, Any]) -> int:
    """The tokens an answer says its unit spent (0 if it does not say or says nonsense)."""
    usage = metadata.get("usage")
    if isinstance(usage, Mapping):
        tokens = usage.get("tokens")
        if isinstance(tokens, int) and not isinstance(tokens, bool) and 0 <= tokens <= MAX_BUDGET:
            return tokens
    return 0


class ProgressKind(enum.Enum):
    """What a progress event reports."""

    STARTED = "started"
    """An agent started on its unit."""
    THINKING = "thinking"
    """A brain is calling its model."""
    TOOL_CALL = "tool_call"
    """A brain called a tool."""
    ASKED = "asked"
    """The unit asked another agent (a delegation)."""
    ANSWERED = "answered"
    """The unit is done; its answer went to the sender."""
    FAILED = "failed"
    """The unit failed; an error went to the sender."""
    REFUSED = "refused"
    """The agent would not start (loop, depth, deadline, budget)."""
    CANCELLED = "cancelled"
    """The unit was cancelled (``task.cancel``)."""


@attrs.frozen
class ProgressEvent:
    """One step of a task, on ``task.<id>.progress`` (a dashboard draws the tree by span)."""

    task: str
    """The task id."""
    span: str
    """The unit it is about."""
    parent: str | None
    """The unit that started it (None: the first unit of the task)."""
    agent: str
    """The agent reporting."""
    kind: ProgressKind
    """What happened."""
    detail: str = ""
    """Words about it (a tool name, an error, who was asked)."""
    tokens: int = 0
    """Tokens the unit had spent when it said this."""
    at: datetime = attrs.field(factory=lambda: datetime.now(UTC))
    """When (UTC)."""

    def to_json(self) -> bytes:
        """The wire form."""
        return dump_json(
            {
                "task": self.task,
                "span": self.span,
                "parent": self.parent,
                "agent": self.agent,
                "kind": self.kind.value,
                "detail": self.detail[:MAX_DETAIL],
                "tokens": self.tokens,
                "at": format_timestamp(self.at),
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> ProgressEvent:
        """Decode.

        Raises:
            ProtocolError: it is malformed.
        """
        document = load_json_object(data)
        try:
            kind = ProgressKind(document.get("kind"))
        except ValueError:
            raise ProtocolError("kind", "not a progress kind") from None
        fields = {}
        for name in ("task", "span", "agent"):
            value = document.get(name)
            if not isinstance(value, str) or not _TOKEN.fullmatch(value):
                raise ProtocolError(name, "expected 1-64 characters from A-Z a-z 0-9 _ -")
            fields[name] = value
        parent = document.get("parent")
        if parent is not None and (not isinstance(parent, str) or not _TOKEN.fullmatch(parent)):
            raise ProtocolError("parent", "expected an id or null")
        detail = document.get("detail", "")
        tokens = document.get("tokens", 0)
        at = document.get("at")
        try:
            when = parse_timestamp(at) if isinstance(at, str) else datetime.now(UTC)
        except ValueError as error:
            raise ProtocolError("at", str(error)) from None
        return cls(
            task=fields["task"],
            span=fields["span"],
            parent=parent,
            agent=fields["agent"],
            kind=kind,
            # What a sender cannot mean is made harmless: a detail is at most what an
            # event carries (500 characters), tokens a count from 0 to MAX_BUDGET.
            detail=detail[:MAX_DETAIL] if isinstance(detail, str) else "",
            tokens=(
                min(max(tokens, 0), MAX_BUDGET)
                if isinstance(tokens, int) and not isinstance(tokens, bool)
                else 0
            ),
            at=when,
        )
