"""What calls to other agents end with when they do not succeed, and the asks in flight.

Each is a :class:`~volta.protocol.VoltaError`: its ``code`` is an
:class:`~volta.protocol.ErrorCode` and its ``message`` the words, whatever the call.
"""

from __future__ import annotations

import trio

from volta.protocol import ErrorCode, Message, VoltaError


class AskTimeout(VoltaError, TimeoutError):
    """No response to an ``ask`` arrived in time (code ``timeout``).

    Attributes:
        agent: the agent asked.
        timeout: the seconds waited.
    """

    def __init__(self, agent: str, timeout: float) -> None:
        words = f"agent {agent!r} did not respond within {timeout:g} s"
        super().__init__(ErrorCode.TIMEOUT, words, words)
        self.agent = agent
        self.timeout = timeout


class AskFailed(VoltaError, RuntimeError):
    """An ``ask`` got an error instead of an answer.

    Attributes:
        agent: the agent asked.
        code: the error code (``agent_error``, ``bad_request``, ``no_agent``,
            ``loop_detected``, ...); a code this version does not know is
            ``agent_error``, its words starting with the code the peer gave.
        message: words about it.
        spent: tokens the failed unit says it spent (0 if it does not say).
    """

    def __init__(self, agent: str, code: ErrorCode, message: str, spent: int = 0) -> None:
        super().__init__(code, message, f"agent {agent!r} failed: {code.value}: {message}")
        self.agent = agent
        self.spent = spent

    @classmethod
    def from_wire(cls, agent: str, code: str, message: str, spent: int = 0) -> AskFailed:
        """The failure an error answer reports (its ``error.code`` as the peer wrote it)."""
        known = ErrorCode.from_wire(code)
        if known.value != code:  # a newer peer's code: say it, as agent_error
            message = f"{code[:64]}: {message}"
        return cls(agent, known, message, spent)


class CapabilityFailed(VoltaError, RuntimeError):
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
        text = f"capability {capability!r} failed{where}: {code.value}: {message}"
        super().__init__(code, message, text)
        self.capability = capability
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
