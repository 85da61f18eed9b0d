"""Volta JSON: the total codec every payload goes through (protocol/_json.py).

The rules are checked case by case, then hypothesis throws random and
adversarial input at both directions: whatever comes in, the decoder returns a
value or raises ProtocolError, and the encoder returns bytes the decoder
accepts or raises PayloadEncodeError. Nothing else may escape.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from volta.protocol import (
    MAX_JSON_DEPTH,
    PayloadEncodeError,
    ProtocolError,
    decode_json,
    encode_json,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (b"[" * 2000, "$", "nested deeper than 64 levels"),
        (b"[" * 65 + b"]" * 65, "$[0][0][0][0][0][0][0][0]...", "nested deeper than 64 levels"),
        (b"1" * 5000, "$", "integer of 5000 digits is out of range"),
        (b"9223372036854775808", "$", "integer 9223372036854775808 is out of range (int64)"),
        (b'"\\ud800"', "$", "lone surrogate"),
        (b'{"a": ["\\udfff"]}', "$.a[0]", "lone surrogate"),
        (b'{"\\ud800": 1}', "$", "key holds a lone surrogate"),
        (b"NaN", "$", "NaN is not a JSON number"),
        (b"[-Infinity]", "$", "-Infinity is not a JSON number"),
        (b"1e400", "$", "number 1e400 is out of range"),
        (b"\xff\xfe{}", "$", "bad UTF-8 byte at 0"),
        (b"\xef\xbb\xbf{}", "$", "not valid UTF-8 JSON"),  # a BOM
        (b"", "$", "not valid UTF-8 JSON"),
        (b'{"a": 1', "$", "not valid UTF-8 JSON"),
    ],
)
def test_what_is_not_volta_json(payload: bytes, field: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_json(payload)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_the_limits_themselves_are_accepted() -> None:
    deepest = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert decode_json(deepest) is not None
    assert decode_json(b"[9223372036854775807, -9223372036854775808]") == [2**63 - 1, -(2**63)]
    assert decode_json(b'"\\ud83d\\ude00"') == "\U0001f600"  # a pair is one character
    assert decode_json('{"é": "ü"}'.encode()) == {"é": "ü"}


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="payload of 11 bytes exceeds 10"):
        decode_json(b'"123456789"', max_bytes=10)


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ({"a": {1, 2}}, "$.a", "set is not a JSON type"),
        ([float("inf")], "$[0]", "inf is not a JSON number"),
        ({"a": "\ud800"}, "$.a", "lone surrogate"),
        ({"\udc00": 1}, "$", "key holds a lone surrogate"),
        ({1: 2}, "$", "key 1 is not a string"),
        (2**63, "$", "integer is out of range (int64)"),
        (b"bytes", "$", "bytes is not a JSON type"),
    ],
)
def test_what_cannot_be_encoded(value: object, field: str, reason: str) -> None:
    with pytest.raises(PayloadEncodeError) as caught:
        encode_json(value)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_cycles_and_depth_cannot_be_encoded() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(PayloadEncodeError, match="nested deeper than 64"):
        encode_json(cycle)
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    with pytest.raises(PayloadEncodeError, match="nested deeper than 64"):
        encode_json(deep)


# --- fuzzing --------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)

# Pieces of JSON text that break naive decoders, spliced into valid documents.
POISON = [
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b"1" * 4400,
    b"-" + b"9" * 30,
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"[" * 1200 + b"]" * 1200,
    b"{" * 100,
    b'"\xff"',
    b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8: invalid UTF-8
    b"\x00",
]


@st.composite
def adversarial_json(draw: st.DrawFn) -> bytes:
    """A valid document with a poisoned piece spliced in at some position."""
    text = json.dumps(draw(json_values)).encode()
    poison = draw(st.sampled_from(POISON))
    position = draw(st.integers(min_value=0, max_value=len(text)))
    return text[:position] + poison + text[position:]


def assert_total(payload: bytes) -> None:
    try:
        value = decode_json(payload)
    except ProtocolError as error:
        str(error).encode("utf-8")  # the error itself can be logged and sent
        return
    # What decodes can be sent again, and means the same.
    assert decode_json(encode_json(value)) == value


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_decode_or_fail_typed(payload: bytes) -> None:
    assert_total(payload)


@FUZZ
@given(adversarial_json())
def test_poisoned_documents_decode_or_fail_typed(payload: bytes) -> None:
    assert_total(payload)


@FUZZ
@given(json_values)
def test_json_values_round_trip(value: Any) -> None:
    decoded = decode_json(encode_json(value))
    assert decoded == value or (isinstance(value, float) and math.isnan(value))


python_values = st.recursive(
    scalars
    | st.floats()
    | st.integers()
    | st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
    | st.sets(st.integers(), max_size=2)
    | st.binary(max_size=4),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children)
        | st.dictionaries(st.text() | st.integers(), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(python_values)
def test_any_python_value_encodes_or_fails_typed(value: Any) -> None:
    try:
        data = encode_json(value)
    except PayloadEncodeError as error:
        str(error).encode("utf-8")
        return
    decode_json(data)  # whatever was encoded is accepted back
