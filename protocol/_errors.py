"""The protocol's errors: one for a payload that does not decode, one for a value that
cannot be sent, one for a name that cannot be a subject token; and the codes that say
why a piece of work failed, with the one base class of every error that carries one."""

from __future__ import annotations

import enum


class ProtocolError(ValueError):
    """A payload does not follow the protocol: the one decode error of Volta.

    Every decoder is total: for any bytes at all it returns its value or raises
    this, naming the field at fault and what is wrong with it.

    Attributes:
        field: the JSON field at fault: ``"$"`` for the document, ``"id"`` for a
            top-level field, ``"agents[2].instances[0].node"`` inside it.
        reason: what is wrong with it, in words (part of the protocol: peers see it).
        what: what was being decoded, when the error says so (``"message"``: the
            text reads ``invalid message: <field>: <reason>``).
    """

    def __init__(self, field: str, reason: str, what: str | None = None) -> None:
        text = f"{field}: {reason}"
        super().__init__(f"invalid {what}: {text}" if what else text)
        self.field = field
        self.reason = reason
        self.what = what

    def about(self, what: str | None) -> ProtocolError:
        """The same error, saying what was being decoded (unless it says already)."""
        if what is None or self.what is not None:
            return self
        return ProtocolError(self.field, self.reason, what)

    def inside(self, prefix: str) -> ProtocolError:
        """The same error for a value found at ``prefix`` (``task`` + ``id`` ->
        ``task.id``; ``agents[0]`` + ``$`` -> ``agents[0]``)."""
        if not prefix:
            return self
        if self.field == "$":
            field = prefix
        elif self.field.startswith("["):
            field = f"{prefix}{self.field}"
        else:
            field = f"{prefix}.{self.field}"
        return ProtocolError(field, self.reason, self.what)


class PayloadEncodeError(ValueError):
    """A value cannot be sent as Volta JSON (a non-JSON type, NaN, a lone surrogate, ...).

    Attributes:
        field: where in the value (``"$"`` for the value itself).
        reason: what is wrong with it, in words.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"cannot encode as JSON: {field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidSubject(ValueError):
    """A subject, agent id or capability name is not acceptable (empty, a wildcard,
    a dot, white space, too long, reserved)."""


class ErrorCode(enum.StrEnum):
    """Why a piece of work failed (docs/PROTOCOL.md, section 6).

    A ``StrEnum``: a code compares equal to its wire form (``ErrorCode.TIMEOUT ==
    "timeout"``) and formats as it.
    """

    NO_CAPABILITY = "no_capability"
    """No online agent has the capability."""
    TIMEOUT = "timeout"
    """The agent did not answer in time."""
    AGENT_ERROR = "agent_error"
    """The agent failed while running the capability or handling the message."""
    BAD_REQUEST = "bad_request"
    """The request was malformed."""
    UNAVAILABLE = "unavailable"
    """No router answered (no Volta node is running)."""
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """The answer is larger than the server's ``max_payload``; it was not sent."""
    UNENCODABLE = "unencodable"
    """The answer holds something JSON cannot carry; it was not sent."""
    NO_AGENT = "no_agent"
    """Nobody listens on the asked agent's subject (made by the asker, not on the wire)."""
    LOOP_DETECTED = "loop_detected"
    """The task has already passed through the agent (section 5.10)."""
    TOO_DEEP = "too_deep"
    """The task has passed through ``max_depth`` agents."""
    DEADLINE_EXCEEDED = "deadline_exceeded"
    """The task's deadline passed before or while the agent worked on it."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """The task's token budget is spent."""
    CANCELLED = "cancelled"
    """The caller cancelled the task (``task.cancel``)."""
    RATE_LIMITED = "rate_limited"
    """The model API kept answering 429 (rate limited), retries included."""
    OVERLOADED = "overloaded"
    """The model API kept answering 529 (overloaded), retries included."""
    BRAIN_UNAVAILABLE = "brain_unavailable"
    """The model API could not be reached or refused the call (5xx, connection, auth)."""
    BUSY = "busy"
    """Too many calls in flight (of this capability, or through this router): try later."""

    @classmethod
    def from_wire(cls, text: str) -> ErrorCode:
        """The code a peer sent; an unknown one (from a newer peer) is ``agent_error``:
        the work failed all the same."""
        try:
            return cls(text)
        except ValueError:
            return cls.AGENT_ERROR


class VoltaError(Exception):
    """The base of every Volta error that carries a protocol code.

    Whoever reports one (a tool result for a brain, the command line, an error
    answer) reads ``code`` and ``message`` alone, whatever the subclass.

    Attributes:
        code: why, as a protocol code.
        message: words about it.
    """

    def __init__(self, code: ErrorCode, message: str, text: str | None = None) -> None:
        """Args:
        code: why.
        message: words about it.
        text: the exception's ``str`` (default ``"<code>: <message>"``).
        """
        if not isinstance(code, ErrorCode):
            raise TypeError(f"a {type(self).__name__} needs an ErrorCode, got {code!r}")
        super().__init__(text if text is not None else f"{code.value}: {message}")
        self.code = code
        self.message = message

    def describe(self) -> str:
        """``"<code>: <message>"``: what a reader (a model, a person) is shown."""
        return f"{self.code.value}: {self.message}"


class TaskRefused(VoltaError):
    """Work was refused by the rules of its task before it began (a loop, too deep, a
    passed deadline, a spent budget); for a brain, a tool error."""
