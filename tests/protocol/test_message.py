"""The message model and its JSON codec: round trips and every rejection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from volta.protocol import (
    Message,
    MessageType,
    PayloadEncodeError,
    ProtocolError,
    decode_message,
    encode_message,
    format_timestamp,
    message_to_dict,
    parse_timestamp,
)


def sample(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "m1",
        "from": "alpha",
        "to": "beta",
        "message": "hello",
        "type": "text",
        "metadata": {"k": [1, 2]},
        "timestamp": "2026-11-25T18:00:00.123456Z",
    }
    document.update(changes)
    return document


def encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def test_round_trip_keeps_every_field() -> None:
    original = Message(
        sender="alpha",
        to="beta",
        message="héllo ✓",
        type=MessageType.QUERY,
        metadata={"nested": {"a": [1, None, True]}},
    )
    decoded = decode_message(encode_message(original))
    assert decoded == original
    assert decoded.timestamp.tzinfo is not None


def test_wire_names_and_utc_timestamp() -> None:
    message = Message(
        sender="alpha",
        to="beta",
        message="x",
        timestamp=datetime(2026, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2))),
    )
    document = json.loads(encode_message(message))
    assert set(document) == {"id", "from", "to", "message", "type", "metadata", "timestamp"}
    assert document["from"] == "alpha"
    assert document["type"] == "text"
    assert document["timestamp"] == "2026-01-02T03:04:05.000006Z"


def test_new_messages_get_unique_ids_and_now_timestamps() -> None:
    before = datetime.now(UTC)
    first = Message(sender="a", to="b", message="x")
    second = Message(sender="a", to="b", message="x")
    assert first.id != second.id
    assert before <= first.timestamp <= datetime.now(UTC)


def test_reply_carries_in_reply_to() -> None:
    question = Message(sender="alpha", to="beta", message="2+2?", type=MessageType.QUERY)
    answer = question.reply("4", metadata={"confidence": 1})
    assert answer.type is MessageType.RESPONSE
    assert (answer.sender, answer.to) == ("beta", "alpha")
    assert answer.in_reply_to == question.id
    assert answer.metadata["confidence"] == 1
    assert question.in_reply_to is None


def test_unknown_fields_are_tolerated() -> None:
    message = decode_message(encoded(sample(priority=5, trace={"id": "t"})))
    assert message.id == "m1"


def test_offsets_are_normalised_to_utc() -> None:
    message = decode_message(encoded(sample(timestamp="2026-11-25T20:00:00+02:00")))
    assert message.timestamp == datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def test_metadata_may_be_absent_or_null() -> None:
    document = sample()
    del document["metadata"]
    assert decode_message(encoded(document)).metadata == {}
    assert decode_message(encoded(sample(metadata=None))).metadata == {}


def test_message_is_frozen() -> None:
    message = Message(sender="a", to="b", message="x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        message.message = "y"  # type: ignore[misc]
    with pytest.raises(TypeError, match="does not support item assignment"):
        message.metadata["k"] = 1  # type: ignore[index]
    assert attrs.evolve(message, message="y").message == "y"


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (b"\xff\xfe", "$", "not valid UTF-8 JSON"),
        (b"{not json", "$", "not valid UTF-8 JSON"),
        (b"[1, 2]", "$", "expected a JSON object, got list"),
        (b'"text"', "$", "expected a JSON object, got str"),
    ],
)
def test_undecodable_documents(payload: bytes, field: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason) as caught:
        decode_message(payload)
    assert caught.value.field == field


@pytest.mark.parametrize("field", ["id", "from", "to", "message", "type", "timestamp"])
def test_each_required_field_missing(field: str) -> None:
    document = sample()
    del document[field]
    with pytest.raises(ProtocolError, match="required field is missing") as caught:
        decode_message(encoded(document))
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"id": 7}, "id", "expected a string, got int"),
        ({"id": ""}, "id", "1-128 characters"),
        ({"id": "x" * 129}, "id", "1-128 characters"),
        ({"from": "a.b"}, "from", "invalid agent id"),
        ({"from": None}, "from", "expected a string, got NoneType"),
        ({"to": "*"}, "to", "invalid agent id"),
        ({"message": {"text": "x"}}, "message", "expected a string, got dict"),
        ({"type": "shout"}, "type", "'shout' is not one of text, command, query, response"),
        ({"type": 1}, "type", "expected a string"),
        ({"metadata": [1]}, "metadata", "expected a JSON object, got list"),
        ({"timestamp": "yesterday"}, "timestamp", "not an ISO 8601 date-time"),
        ({"timestamp": "2026-11-25T18:00:00"}, "timestamp", "must carry a UTC offset"),
        ({"timestamp": 1764093600}, "timestamp", "expected a string, got int"),
    ],
)
def test_invalid_fields_are_named(changes: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason) as caught:
        decode_message(encoded(sample(**changes)))
    assert caught.value.field == field
    assert caught.value.reason.startswith(reason) or reason in caught.value.reason


def test_constructor_validates_ids() -> None:
    with pytest.raises(ValueError, match="sender"):
        Message(sender="a.b", to="b", message="x")
    with pytest.raises(ValueError, match="timezone-aware"):
        Message(sender="a", to="b", message="x", timestamp=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="shout"):
        Message(sender="a", to="b", message="x", type="shout")


@pytest.mark.parametrize(
    ("metadata", "content", "field", "reason"),
    [
        ({"s": {1, 2}}, "x", "$.metadata.s", "set is not a JSON type"),
        ({"n": float("nan")}, "x", "$.metadata.n", "nan is not a JSON number"),
        ({"big": 2**64}, "x", "$.metadata.big", "integer is out of range (int64)"),
        ({1: "x"}, "x", "$.metadata", "key 1 is not a string"),
        ({}, "half a pair: \ud83d", "$.message", "lone surrogate"),
    ],
)
def test_what_json_cannot_carry_is_a_typed_encode_error(
    metadata: dict[object, object], content: str, field: str, reason: str
) -> None:
    message = Message(sender="a", to="b", message=content, metadata=metadata)  # type: ignore[arg-type]
    with pytest.raises(PayloadEncodeError) as caught:
        encode_message(message)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_message_to_dict_is_json_ready() -> None:
    message = Message(sender="a", to="b", message="x")
    assert json.loads(json.dumps(message_to_dict(message)))["from"] == "a"


@pytest.mark.parametrize("year", [1, 999, 1000, 2026, 9999])
def test_every_timestamp_volta_accepts_it_can_write_back(year: int) -> None:
    """strftime("%Y") wrote year 999 as '999', which the decoder then refused."""
    moment = datetime(year, 6, 1, 12, 30, 15, 7, tzinfo=UTC)
    text = format_timestamp(moment)
    assert text[:4] == f"{year:04d}"
    assert parse_timestamp(text) == moment
