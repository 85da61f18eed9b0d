"""Validators for spec classes: each checks one setting and raises
:class:`~volta.core.ConfigError` naming it, in the words a YAML author reads
(``expected a number > 0, got 0``).

Use them as attrs validators::

    @attrs.frozen
    class Limits:
        timeout: float = attrs.field(default=10.0, validator=validators.number(gt=0))
        workers: int = attrs.field(default=8, validator=validators.integer(ge=1))

A value of the wrong type raises :class:`~volta.core.ConfigTypeError` (a
``ConfigError`` and a ``TypeError``); a value out of range, ``ConfigError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import attrs

from ._settings import ConfigError, ConfigProblem, ConfigTypeError, describe

__all__ = [
    "Validator",
    "boolean",
    "describe",
    "each",
    "integer",
    "is_number",
    "number",
    "optional",
    "strings",
    "text",
]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]
"""What attrs calls: ``validator(instance, attribute, value)``."""


def is_number(value: object) -> TypeGuard[float]:
    """A finite int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bounds(gt: float | None, ge: float | None, le: float | None) -> str:
    return " and ".join(
        f"{op} {bound:g}" for op, bound in ((">", gt), (">=", ge), ("<=", le)) if bound is not None
    )


def number(
    *, gt: float | None = None, ge: float | None = None, le: float | None = None
) -> Validator:
    """A finite number within the given bounds."""
    bounds = _bounds(gt, ge, le)
    expected = f"expected a number {bounds}" if bounds else "expected a number"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigTypeError(f"{expected}, got {describe(value)}", key=attribute.name)
        if (
            not math.isfinite(value)
            or (gt is not None and value <= gt)
            or (ge is not None and value < ge)
            or (le is not None and value > le)
        ):
            raise ConfigError(f"{expected}, got {describe(value)}", key=attribute.name)

    return check


def integer(*, ge: int | None = None, le: int | None = None) -> Validator:
    """An integer (not a bool) within the given bounds."""
    bounds = _bounds(None, ge, le)
    expected = f"expected an integer {bounds}" if bounds else "expected an integer"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigTypeError(f"{expected}, got {describe(value)}", key=attribute.name)
        if (ge is not None and value < ge) or (le is not None and value > le):
            raise ConfigError(f"{expected}, got {describe(value)}", key=attribute.name)

    return check


def text(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A non-empty string (not only white space)."""
    if not isinstance(value, str):
        raise ConfigTypeError(
            f"expected a non-empty string, got {describe(value)}", key=attribute.name
        )
    if not value.strip():
        raise ConfigError(f"expected a non-empty string, got {describe(value)}", key=attribute.name)


def boolean(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ConfigTypeError(f"expected true or false, got {describe(value)}", key=attribute.name)


def strings(
    field: str, *, item: str = "a string", whole: str = "a list"
) -> Callable[[Any], tuple[str, ...]]:
    """A converter to a tuple of strings, from a list or tuple of them (never from one
    string, which would be a tuple of letters); every item that is not a string is
    reported (``field[2]: expected a string, got 5``), in the words given."""

    def convert(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple):
            raise ConfigTypeError(f"expected {whole}, got {describe(value)}", key=field)
        problems = [
            ConfigProblem(f"{field}[{index}]", f"expected {item}, got {describe(entry)}")
            for index, entry in enumerate(value)
            if not isinstance(entry, str)
        ]
        if problems:
            raise ConfigTypeError.from_problems(problems)
        return tuple(value)

    return convert


def optional(validator: Validator) -> Validator:
    """None, or what ``validator`` accepts."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            validator(instance, attribute, value)

    return check


def each(validator: Callable[[object, str], str | None]) -> Validator:
    """A sequence whose items ``validator(item, key)`` checks, returning a reason or None;
    every bad item is reported (``capabilities[2]``), at once."""

    def check(_instance: object, attribute: attrs.Attribute[Any], value: Sequence[object]) -> None:
        problems = []
        for index, item in enumerate(value):
            key = f"{attribute.name}[{index}]"
            reason = validator(item, key)
            if reason is not None:
                problems.append(ConfigProblem(key, reason))
        if problems:
            raise ConfigError.from_problems(problems)

    return check
