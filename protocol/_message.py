"""The Volta message, and its one JSON codec.

On the wire a message is a JSON object::

    {"id": "…", "from": "alpha", "to": "beta", "message": "hello", "type": "text",
     "metadata": {}, "timestamp": "2026-11-25T18:00:00.123456Z"}

Decoding is strict about the fields it knows (each error names the field and the
reason: ``invalid message: from: required field is missing``) and ignores the ones
it does not, so a newer sender can add fields without breaking older agents.
``null`` is a value like any other here (``from: null`` is not a string), except
for ``metadata``, where it means none.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from . import _fields as fields
from ._codec import Codec, Field
from ._errors import ProtocolError
from ._names import validate_agent_id, validate_own_agent_id
from ._timestamps import format_timestamp

MAX_MESSAGE_ID = 128
"""Longest message id (characters)."""


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
    if not value or len(value) > MAX_MESSAGE_ID:
        raise ValueError(f"id: must be 1-{MAX_MESSAGE_ID} characters")


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


def _message_id(value: Any, field: str) -> str:
    fields.string(value, field)
    if not 0 < len(value) <= MAX_MESSAGE_ID:
        raise ProtocolError(field, f"must be 1-{MAX_MESSAGE_ID} characters")
    return str(value)


def _metadata(value: Any, field: str) -> dict[str, Any]:
    return fields.json_object(value, field)


MESSAGE_CODEC: Codec[Message] = Codec(
    Message,
    [
        Field("id", _message_id, required=True),
        Field("from", fields.agent_id, attribute="sender", required=True),
        Field("to", fields.address, required=True),
        Field("message", fields.string, required=True),
        Field("type", fields.choice(MessageType), required=True, encode=lambda t: t.value),
        Field("metadata", _metadata, null_is_absent=True, encode=dict),
        Field("timestamp", fields.timestamp, required=True, encode=format_timestamp),
    ],
    what="message",
    null_is_absent=False,
)
"""The codec of :class:`Message` (unknown fields are ignored: forward compatibility)."""


def message_to_dict(message: Message) -> dict[str, Any]:
    """The JSON-ready dict of a message (wire field names)."""
    return MESSAGE_CODEC.to_dict(message)


def encode_message(message: Message) -> bytes:
    """Encode a message as compact UTF-8 JSON.

    Raises:
        PayloadEncodeError: the content or the metadata holds something Volta JSON
            cannot carry (see :func:`~volta.protocol.encode_json`).
    """
    return MESSAGE_CODEC.encode(message)


def message_from_dict(document: object) -> Message:
    """Build a message from a decoded JSON document.

    Raises:
        ProtocolError: a known field is missing or invalid; the error names it
            (``invalid message: <field>: <reason>``).
    """
    return MESSAGE_CODEC.from_dict(document)


def decode_message(data: bytes | str) -> Message:
    """Decode one message from JSON bytes; total: any bytes give a message or the error.

    Raises:
        ProtocolError: the payload is not Volta JSON, not an object, or a known
            field is missing or invalid (``invalid message: <field>: <reason>``).
    """
    return MESSAGE_CODEC.decode(data)


def message_attribution(document: object) -> tuple[str, str] | None:
    """``(from, id)`` of a document that failed to decode as a message, if both are usable.

    Such a sender can be told its message was refused (a ``bad_request`` error
    response). None when either is unusable, and for anything whose ``type`` is
    ``"response"``: responses are never answered, not even a broken one (that
    could loop between two agents).
    """
    if not isinstance(document, dict) or document.get("type") == MessageType.RESPONSE.value:
        return None
    try:
        return fields.agent_id(document.get("from"), "from"), _message_id(document.get("id"), "id")
    except ProtocolError:
        return None
