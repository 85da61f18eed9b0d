"""The Volta message, and its one JSON codec.

On the wire a message is a JSON object::

    {"id": "…", "from": "alpha", "to": "beta", "message": "hello", "type": "text",
     "metadata": {}, "timestamp": "2026-11-25T18:00:00.123456Z"}

Decoding is strict about the fields it knows (each error names the field and the
reason) and ignores the ones it does not, so a newer sender can add fields
without breaking older agents. The codec is written out by hand rather than
generated: it runs once per message on the hot path, and its error messages are
part of the protocol (docs/PROTOCOL.md).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from ._errors import MessageDecodeError, PayloadDecodeError
from ._json import decode_json, encode_json
from ._subjects import validate_agent_id, validate_own_agent_id

BROADCAST = "broadcast"
"""The ``to`` of a message sent to every agent (no agent may use this id)."""

_MAX_ID_LENGTH = 128


class MessageType(enum.Enum):
    """What a message asks of its receiver."""

    TEXT = "text"
    COMMAND = "command"
    QUERY = "query"
    RESPONSE = "response"


def _new_id() -> str:
    return uuid.uuid4().hex


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _freeze_metadata(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _check_agent_id(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        validate_agent_id(value)
    except ValueError as error:
        raise ValueError(f"{attribute.name}: {error}") from None


def _check_sender(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        validate_own_agent_id(value)
    except ValueError as error:
        raise ValueError(f"{attribute.name}: {error}") from None


def _check_message_id(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not value or len(value) > _MAX_ID_LENGTH:
        raise ValueError(f"id: must be 1-{_MAX_ID_LENGTH} characters")


def _check_utc(_instance: object, _attribute: attrs.Attribute[datetime], value: datetime) -> None:
    if value.utcoffset() is None:
        raise ValueError("timestamp: must be timezone-aware")


@attrs.frozen
class Message:
    """One message between agents, as trio code sees it."""

    sender: str = attrs.field(validator=_check_sender)
    """Agent id of the sender (``from`` on the wire); never ``"broadcast"``."""
    to: str = attrs.field(validator=_check_agent_id)
    """Agent id of the receiver, or ``"broadcast"``."""
    message: str = attrs.field(validator=attrs.validators.instance_of(str))
    """The content."""
    type: MessageType = attrs.field(default=MessageType.TEXT, converter=MessageType)
    """What the message asks of its receiver."""
    metadata: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_freeze_metadata, eq=True, hash=False
    )
    """Free-form JSON object; ``in_reply_to`` marks a response."""
    id: str = attrs.field(factory=_new_id, validator=_check_message_id)
    """Unique id of this message."""
    timestamp: datetime = attrs.field(factory=_utc_now, validator=_check_utc)
    """When the message was created (timezone-aware; encoded as UTC)."""

    @property
    def in_reply_to(self) -> str | None:
        """The id of the message this one answers, if it is a response."""
        value = self.metadata.get("in_reply_to")
        return value if isinstance(value, str) else None

    def reply(
        self,
        message: str,
        *,
        sender: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Message:
        """Build the response to this message.

        Args:
            message: the content of the response.
            sender: who answers; defaults to this message's receiver.
            metadata: extra metadata; ``in_reply_to`` is always set to this id.
        """
        return Message(
            sender=sender if sender is not None else self.to,
            to=self.sender,
            message=message,
            type=MessageType.RESPONSE,
            metadata={**(metadata or {}), "in_reply_to": self.id},
        )


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, microsecond precision, a four-digit year.

    (``strftime("%Y")`` writes year 999 as ``999``, which no ISO 8601 reader,
    Volta's included, accepts back.)
    """
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:"
        f"{v.second:02d}.{v.microsecond:06d}Z"
    )


def message_to_dict(message: Message) -> dict[str, Any]:
    """The JSON-ready dict of a message (wire field names)."""
    return {
        "id": message.id,
        "from": message.sender,
        "to": message.to,
        "message": message.message,
        "type": message.type.value,
        "metadata": dict(message.metadata),
        "timestamp": format_timestamp(message.timestamp),
    }


def encode_message(message: Message) -> bytes:
    """Encode a message as compact UTF-8 JSON.

    Raises:
        PayloadEncodeError: the content or the metadata holds something Volta JSON
            cannot carry (see ``volta.bus.encode_json``).
    """
    return encode_json(message_to_dict(message))


def _require_str(document: Mapping[str, Any], field: str) -> str:
    if field not in document:
        raise MessageDecodeError(field, "required field is missing")
    value = document[field]
    if not isinstance(value, str):
        raise MessageDecodeError(field, f"expected a string, got {type(value).__name__}")
    return value


def _agent_id_field(document: Mapping[str, Any], field: str, *, own: bool = False) -> str:
    value = _require_str(document, field)
    try:
        return validate_own_agent_id(value) if own else validate_agent_id(value)
    except ValueError as error:
        raise MessageDecodeError(field, str(error)) from None


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset, as an aware UTC datetime.

    Raises:
        ValueError: not such a date-time, or out of range once converted to UTC
            (the message is fit for a ``field: reason`` error).
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {text[:40]!r}") from None
    if value.utcoffset() is None:
        raise ValueError("must carry a UTC offset (e.g. a trailing 'Z')")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise ValueError(f"out of range in UTC: {text[:40]!r}") from None


def _timestamp_field(document: Mapping[str, Any]) -> datetime:
    try:
        return parse_timestamp(_require_str(document, "timestamp"))
    except MessageDecodeError:
        raise
    except ValueError as error:
        raise MessageDecodeError("timestamp", str(error)) from None


def message_from_dict(document: object) -> Message:
    """Build a message from a decoded JSON document.

    Unknown fields are ignored (forward compatibility).

    Raises:
        MessageDecodeError: a known field is missing or invalid; the error names it.
    """
    if not isinstance(document, dict):
        raise MessageDecodeError("$", f"expected a JSON object, got {type(document).__name__}")
    message_id = _require_str(document, "id")
    if not message_id or len(message_id) > _MAX_ID_LENGTH:
        raise MessageDecodeError("id", f"must be 1-{_MAX_ID_LENGTH} characters")
    sender = _agent_id_field(document, "from", own=True)
    to = _agent_id_field(document, "to")
    content = _require_str(document, "message")
    type_text = _require_str(document, "type")
    try:
        message_type = MessageType(type_text)
    except ValueError:
        allowed = ", ".join(t.value for t in MessageType)
        raise MessageDecodeError("type", f"{type_text!r} is not one of {allowed}") from None
    metadata = document.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise MessageDecodeError(
            "metadata", f"expected a JSON object, got {type(metadata).__name__}"
        )
    timestamp = _timestamp_field(document)
    return Message(
        sender=sender,
        to=to,
        message=content,
        type=message_type,
        metadata=metadata,
        id=message_id,
        timestamp=timestamp,
    )


def decode_message(data: bytes | str) -> Message:
    """Decode one message from JSON bytes; total: any bytes give a message or the error.

    Raises:
        MessageDecodeError: the payload is not Volta JSON (``volta.bus.decode_json``),
            not an object, or a known field is missing or invalid.
    """
    try:
        document = decode_json(data)
    except PayloadDecodeError as error:
        raise MessageDecodeError(error.field, error.reason) from None
    return message_from_dict(document)


def message_attribution(document: object) -> tuple[str, str] | None:
    """``(from, id)`` of a document that failed to decode as a message, if both are usable.

    Such a sender can be told its message was refused (a ``bad_request`` error
    response). None when either is unusable, and for anything whose ``type`` is
    ``"response"``: responses are never answered, not even a broken one (that
    could loop between two agents).
    """
    if not isinstance(document, dict) or document.get("type") == MessageType.RESPONSE.value:
        return None
    sender, message_id = document.get("from"), document.get("id")
    if not isinstance(sender, str) or not isinstance(message_id, str):
        return None
    if not 0 < len(message_id) <= _MAX_ID_LENGTH:
        return None
    try:
        validate_own_agent_id(sender)
    except ValueError:
        return None
    return sender, message_id
