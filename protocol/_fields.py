"""The field rules every payload is made of: each checks one JSON value and names
its field in the error. Texts follow one pattern, ``expected <what>, got <type>``,
so a peer reading a ``bad_request`` learns the field, the rule and what it sent.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from ._codec import Decoder, type_name
from ._errors import InvalidSubject, ProtocolError
from ._names import ID_RULE, is_id, validate_agent_id, validate_capability, validate_own_agent_id
from ._timestamps import parse_timestamp

E = TypeVar("E", bound=enum.Enum)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _number_shown(value: object) -> str:
    return repr(value)[:40] if isinstance(value, int | float) else type_name(value)


def anything(value: Any, _field: str) -> Any:
    """Any JSON value, as it is."""
    return value


def string(value: object, field: str) -> str:
    """A string."""
    if not isinstance(value, str):
        raise ProtocolError(field, f"expected a string, got {type_name(value)}")
    return value


def text(max_length: int) -> Decoder:
    """A string of at most ``max_length`` characters with no control characters (names
    end up in log lines and on terminals: no newlines, no escape sequences)."""

    def decode(value: object, field: str) -> str:
        checked = string(value, field)
        if len(checked) > max_length:
            raise ProtocolError(field, f"longer than {max_length} characters")
        if _CONTROL.search(checked):
            raise ProtocolError(field, "holds control characters")
        return checked

    return decode


def identifier(value: Any, field: str) -> str:
    """An id (task, span, instance): ``ID_PATTERN``."""
    if not is_id(value):
        raise ProtocolError(field, f"expected {ID_RULE}")
    return str(value)


def _name(check: Callable[[str], str]) -> Decoder:
    def decode(value: Any, field: str) -> str:
        string(value, field)
        try:
            return check(value)
        except InvalidSubject as error:
            raise ProtocolError(field, str(error)) from None

    return decode


agent_id = _name(validate_own_agent_id)
"""The id of an agent (never ``broadcast``)."""
address = _name(validate_agent_id)
"""Whom a message is to: an agent id, or ``broadcast``."""
capability_name = _name(validate_capability)
"""A capability's name."""


def number(*, positive: bool = False) -> Decoder:
    """A finite number, not negative (``positive``: greater than 0); as a float."""

    def decode(value: Any, field: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ProtocolError(field, f"expected a number, got {type_name(value)}")
        if positive and value <= 0:
            raise ProtocolError(field, f"must be greater than 0, got {_number_shown(value)}")
        if value < 0:
            raise ProtocolError(field, f"must not be negative, got {value}")
        return float(value)

    return decode


def count(maximum: int) -> Decoder:
    """A counter: a number from 0 to ``maximum``, as an int (a fraction is cut)."""
    check = number()

    def decode(value: Any, field: str) -> int:
        amount = check(value, field)
        if amount > maximum:
            raise ProtocolError(field, f"must be at most {maximum}, got {amount:g}")
        return int(amount)

    return decode


def integer(low: int, high: int | None = None) -> Decoder:
    """An integer (not a bool, not a fraction) from ``low`` (to ``high``)."""
    expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def decode(value: Any, field: str) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            raise ProtocolError(field, f"expected {expected}, got {_number_shown(value)}")
        return value

    return decode


def boolean(value: Any, field: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise ProtocolError(field, f"expected true or false, got {type_name(value)}")
    return value


def timestamp(value: Any, field: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset, as an aware UTC datetime."""
    string(value, field)
    try:
        return parse_timestamp(value)
    except ValueError as error:
        raise ProtocolError(field, str(error)) from None


def choice(kind: type[E], *, unknown: E | None = None) -> Decoder:
    """One of an enum's values; an unknown one is ``unknown`` if given (what a newer
    peer may send), else an error listing the values."""
    values = {member.value: member for member in kind}
    allowed = ", ".join(str(member.value) for member in kind)

    def decode(value: Any, field: str) -> E:
        string(value, field)
        member = values.get(value)
        if member is not None:
            return member
        if unknown is not None:
            return unknown
        raise ProtocolError(field, f"{value[:40]!r} is not one of {allowed}")

    return decode


def json_object(value: Any, field: str) -> dict[str, Any]:
    """A JSON object."""
    if not isinstance(value, dict):
        raise ProtocolError(field, f"expected a JSON object, got {type_name(value)}")
    return value


def list_of(item: Decoder, *, most: int | None, noun: str, least: int = 0) -> Decoder:
    """A list of ``least`` to ``most`` items (None: no limit but the payload's size),
    each checked at ``field[i]``; a tuple."""

    def decode(value: Any, field: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ProtocolError(field, f"expected a list, got {type_name(value)}")
        if most is not None and len(value) > most:
            raise ProtocolError(field, f"more than {most} {noun}")
        if len(value) < least:
            raise ProtocolError(field, f"expected at least {least} {noun}")
        return tuple(item(entry, f"{field}[{index}]") for index, entry in enumerate(value))

    return decode


def number_map(*, most: int, key_length: int) -> Decoder:
    """An object of at most ``most`` numbers, keys of at most ``key_length`` characters."""
    check = number()

    def decode(value: Any, field: str) -> dict[str, float]:
        if not isinstance(value, dict) or len(value) > most:
            raise ProtocolError(field, f"expected an object of at most {most} numbers")
        numbers: dict[str, float] = {}
        for key, entry in value.items():
            if len(key) > key_length:
                raise ProtocolError(field, f"keys are at most {key_length} characters")
            numbers[key] = check(entry, f"{field}.{key}")
        return numbers

    return decode


def optional(decode: Decoder) -> Decoder:
    """``null``, or what ``decode`` accepts."""
    return lambda value, field: None if value is None else decode(value, field)


def frozen_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    """Encodes a read-only mapping as a plain object."""
    return dict(value)
