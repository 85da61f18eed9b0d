"""Tasks on the wire: the context a unit of work carries (``metadata.task``), its
cancellation (``task.cancel``), its progress (``task.<id>.progress``) and what an
answer says it spent (``metadata.usage``). docs/PROTOCOL.md 5.10-5.12.

A *task* is what a caller wants done; a *unit* is one agent's share of it (handling
one message or capability call)::

    {"id": "<task id>", "spans": ["<s0>", "<s1>"], "chain": ["cli-7f3a", "coordinator"],
     "deadline": "2026-12-01T08:30:00.000000Z", "budget": 12000, "max_depth": 8}

- ``chain``: the agents (and the client) the task passed through, the sender last.
  An agent never handles a task that has already passed through it (``loop_detected``)
  nor one whose chain is ``max_depth`` long (``too_deep``).
- ``spans``: one id per hop, the last one naming the unit this message starts.
  Cancelling a span (``task.cancel``) cancels that unit and everything it started.
- ``deadline``: after it nobody starts work on the task, and work in progress stops.
- ``budget``: the tokens the receiving unit may spend, its delegates included.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from . import _fields as fields
from ._codec import Codec, Field
from ._errors import ErrorCode, ProtocolError, TaskRefused
from ._timestamps import format_timestamp

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
MAX_REASON = 500
"""Longest ``reason`` of a cancellation (characters)."""


def new_id() -> str:
    """A fresh task or span id: 32 hex digits."""
    return uuid.uuid4().hex


def anonymous_caller() -> str:
    """A name for a caller that did not say who it is (a capability request without a
    task): fresh each time, so it can never be mistaken for an agent on a chain."""
    return f"anon-{uuid.uuid4().hex[:16]}"


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

    def refusal(self, agent_id: str) -> TaskRefused | None:
        """Why ``agent_id`` must not start on this task, or None."""
        if agent_id in self.chain:
            path = " -> ".join((*self.chain, agent_id))
            return TaskRefused(
                ErrorCode.LOOP_DETECTED,
                f"the task has already passed through {agent_id!r} ({path})",
            )
        if len(self.chain) >= self.max_depth:
            return TaskRefused(
                ErrorCode.TOO_DEEP,
                f"the task has passed through {len(self.chain)} agents, the most it may "
                f"(max_depth {self.max_depth})",
            )
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            return TaskRefused(
                ErrorCode.DEADLINE_EXCEEDED, f"its deadline passed {-remaining:.3f} s ago"
            )
        return None

    def call_refusal(self, caller: tuple[str, ...], to: str | None) -> TaskRefused | None:
        """Why a unit whose chain is ``caller`` must not call ``to`` (an agent; None:
        a capability, whoever serves it), or None: the same rules, seen from the caller."""
        if to is not None and to in caller:
            return TaskRefused(
                ErrorCode.LOOP_DETECTED,
                f"{to!r} is already working on this task ({' -> '.join((*caller, to))})",
            )
        if to is not None and len(caller) >= self.max_depth:
            return TaskRefused(
                ErrorCode.TOO_DEEP,
                f"the task has passed through {len(caller)} agents (max_depth {self.max_depth})",
            )
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            return TaskRefused(ErrorCode.DEADLINE_EXCEEDED, "the task's deadline has passed")
        return None

    def delegate(self, sender: str, budget: int | None) -> TaskContext:
        """The context of a message ``sender`` (this unit's agent) sends for the task."""
        return attrs.evolve(
            self, spans=(*self.spans, new_id()), chain=(*self.chain, sender), budget=budget
        )


def _same_length(task: TaskContext) -> None:
    if len(task.spans) != len(task.chain):
        raise ProtocolError("spans", "expected as many spans as agents in the chain")


def _is_none(value: object) -> bool:
    return value is None


TASK_CODEC: Codec[TaskContext] = Codec(
    TaskContext,
    [
        Field("id", fields.identifier, required=True),
        Field(
            "spans",
            fields.list_of(fields.identifier, least=1, most=MAX_CHAIN, noun="ids"),
            required=True,
            encode=list,
        ),
        Field(
            "chain",
            # (``broadcast`` is nobody: never on a chain)
            fields.list_of(fields.agent_id, least=1, most=MAX_CHAIN, noun="ids"),
            required=True,
            encode=list,
        ),
        Field("max_depth", fields.integer(1, MAX_CHAIN)),
        Field("deadline", fields.timestamp, omit=_is_none, encode=format_timestamp),
        Field("budget", fields.integer(0, MAX_BUDGET), omit=_is_none),
    ],
    check=_same_length,
)
"""The codec of :class:`TaskContext`: ``TASK_CODEC.from_dict(value, "task")`` names
fields ``task.chain[1]``."""


# --- what an answer spent ----------------------------------------------------------------


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


# --- cancel ----------------------------------------------------------------------------------


@attrs.frozen
class CancelRequest:
    """What travels on ``task.cancel``."""

    task: str
    """The task id."""
    span: str
    """Cancel the units whose spans include this one."""
    reason: str = ""
    """Words about why (for the cancelled units' answers and logs)."""


def _reason(value: Any, field: str) -> str:
    return fields.string(value, field)[:MAX_REASON]


CANCEL_CODEC: Codec[CancelRequest] = Codec(
    CancelRequest,
    [
        Field("task", fields.identifier, required=True),
        Field("span", fields.identifier, required=True),
        Field("reason", _reason),
    ],
)
"""The codec of :class:`CancelRequest`."""


# --- progress --------------------------------------------------------------------------------


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
    RESUMED = "resumed"
    """The unit was started before (its node died): it goes on from its journal."""


def _now() -> datetime:
    return datetime.now(UTC)


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
    at: datetime = attrs.field(factory=_now)
    """When (UTC)."""


# What a sender cannot mean is made harmless: a detail is at most what an event carries
# (500 characters), tokens a count from 0 to MAX_BUDGET, a time that is not a string now.


def _detail(value: Any, _field: str) -> str:
    return value[:MAX_DETAIL] if isinstance(value, str) else ""


def _tokens(value: Any, _field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 0), MAX_BUDGET)
    return 0


def _at(value: Any, field: str) -> datetime:
    return fields.timestamp(value, field) if isinstance(value, str) else _now()


PROGRESS_CODEC: Codec[ProgressEvent] = Codec(
    ProgressEvent,
    [
        Field("task", fields.identifier, required=True),
        Field("span", fields.identifier, required=True),
        Field("parent", fields.identifier, missing=None),
        Field("agent", fields.identifier, required=True),
        Field("kind", fields.choice(ProgressKind), required=True, encode=lambda k: k.value),
        Field("detail", _detail, encode=lambda detail: detail[:MAX_DETAIL]),
        Field("tokens", _tokens),
        Field("at", _at, encode=format_timestamp),
    ],
)
"""The codec of :class:`ProgressEvent` (lenient where a sender cannot mean harm)."""
