"""The errors the bus raises.

Every error of the transport is a ``BusError`` so callers can catch the family at
once. What the bus is given that cannot go on the wire at all (a malformed subject,
a value JSON cannot carry) is the protocol's error (``volta.protocol.InvalidSubject``,
``PayloadEncodeError``), raised before anything is sent. Errors never carry
credentials: URLs inside them are redacted before they are built.
"""

from __future__ import annotations


class BusError(Exception):
    """Base class of every error raised by ``volta.bus``."""


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
