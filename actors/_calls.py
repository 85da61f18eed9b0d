"""What calls to other agents end with when they do not succeed, and the asks in flight."""

from __future__ import annotations

import trio

from volta.bus import Message

from ._protocol import ErrorCode


class AskTimeout(TimeoutError):
    """No response to an ``ask`` arrived in time."""

    def __init__(self, agent: str, timeout: float) -> None:
        super().__init__(f"agent {agent!r} did not respond within {timeout:g} s")
        self.agent = agent
        self.timeout = timeout


class AskFailed(RuntimeError):
    """An ``ask`` got an error instead of an answer.

    Attributes:
        agent: the agent asked.
        code: the error code (``agent_error``, ``bad_request``, ``no_agent``,
            ``loop_detected``, ...; codes from the answering agent are passed through).
        message: words about it.
        spent: tokens the failed unit says it spent (0 if it does not say).
    """

    def __init__(self, agent: str, code: str, message: str, spent: int = 0) -> None:
        super().__init__(f"agent {agent!r} failed: {code}: {message}")
        self.agent = agent
        self.code = code
        self.message = message
        self.spent = spent


class CapabilityFailed(RuntimeError):
    """A capability request got an error reply.

    Attributes:
        capability: the capability requested.
        code: the protocol error code.
        message: words about it.
        agent: the agent that failed, if one was involved.
    """

    def __init__(
        self, capability: str, code: ErrorCode, message: str, agent: str | None = None
    ) -> None:
        where = f" (agent {agent!r})" if agent else ""
        super().__init__(f"capability {capability!r} failed{where}: {code.value}: {message}")
        self.capability = capability
        self.code = code
        self.message = message
        self.agent = agent


class PendingAsks:
    """Responses awaited by ``ask``, keyed by the id of the question."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[trio.Event, list[Message]]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def open(self, question_id: str) -> tuple[trio.Event, list[Message]]:
        """Register a question; the list receives the response."""
        slot: tuple[trio.Event, list[Message]] = (trio.Event(), [])
        self._waiting[question_id] = slot
        return slot

    def close(self, question_id: str) -> None:
        """Forget a question (answered, timed out or cancelled)."""
        self._waiting.pop(question_id, None)

    def resolve(self, response: Message) -> bool:
        """Hand a response to its asker; False if nobody waits for it."""
        key = response.in_reply_to
        slot = self._waiting.pop(key, None) if key is not None else None
        if slot is None:
            return False
        slot[1].append(response)
        slot[0].set()
        return True
