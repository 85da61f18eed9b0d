"""The errors the bus raises.

Every error is a ``BusError`` so callers can catch the family at once. Errors
never carry credentials: URLs inside them are redacted before they are built.
"""

from __future__ import annotations


class BusError(Exception):
    """Base class of every error raised by ``volta.bus``."""


class InvalidSubject(BusError, ValueError):
    """A subject or agent id is not acceptable (empty, wildcard, bad token)."""


class PayloadDecodeError(BusError, ValueError):
    """A payload is not Volta JSON (see ``volta.bus.decode_json``).

    Attributes:
        field: the JSON field at fault (``"$"`` for the document as a whole,
            ``"$.metadata.x"`` for a value inside it).
        reason: what is wrong with it, in words.
    """

    _what = "invalid payload"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{self._what}: {field}: {reason}")
        self.field = field
        self.reason = reason


class MessageDecodeError(PayloadDecodeError):
    """A payload is not a valid Volta message."""

    _what = "invalid message"


class PayloadEncodeError(BusError, ValueError):
    """A value cannot be sent as Volta JSON (a non-JSON type, NaN, a lone surrogate, ...).

    Attributes:
        field: where in the value (``"$"`` for the value itself).
        reason: what is wrong with it, in words.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"cannot encode as JSON: {field}: {reason}")
        self.field = field
        self.reason = reason


class PayloadTooLarge(BusError, ValueError):
    """A payload is larger than the server's ``max_payload``; nothing was sent."""

    def __init__(self, subject: str, size: int, max_payload: int) -> None:
        super().__init__(
            f"payload for {subject!r} is {size} bytes, above the server's max_payload "
            f"of {max_payload} bytes; nothing was sent"
        )
        self.subject = subject
        self.size = size
        self.max_payload = max_payload


class RequestTimeout(BusError, TimeoutError):
    """No reply arrived for a request within its timeout."""

    def __init__(self, subject: str, timeout: float) -> None:
        super().__init__(f"no reply on {subject!r} within {timeout:g} s")
        self.subject = subject
        self.timeout = timeout


class NoResponders(BusError):
    """Nobody is subscribed to the subject of a request (the server said so at once)."""

    def __init__(self, subject: str) -> None:
        super().__init__(f"no responders on {subject!r}")
        self.subject = subject


class BusClosed(BusError):
    """The bus is closed (by its owner, or it gave up reconnecting)."""


class ConnectFailed(BusError, ConnectionError):
    """The first connection to the servers could not be made."""
