"""The one error a bad configuration produces, and how values are shown inside it."""

from __future__ import annotations

from collections.abc import Mapping

_MAX_SHOWN = 60


class ConfigError(ValueError):
    """A configuration is not acceptable.

    The message reads ``<source>: <key>: <reason>``, leaving out the parts that
    are not known, for example
    ``config/agents/seed.yaml: agents[1].id: invalid agent id 'a.b': use 1-64
    characters from A-Z a-z 0-9 _ -``.

    Attributes:
        source: where the configuration came from: a file path, ``"<string>"``,
            ``"$NATS_URL"`` for an environment override, ``"override"`` for
            :func:`with_overrides`; None for an object built directly in Python.
        key: dotted path of the offending key (``agents[1].capabilities[0]``,
            ``supervision.strategy``); None when the problem is the document as a
            whole (not found, not YAML, not a mapping).
        reason: what is wrong, in words. Never holds a password or a token.
    """

    def __init__(self, reason: str, *, key: str | None = None, source: str | None = None) -> None:
        self.reason = reason
        self.key = key
        self.source = source
        super().__init__(": ".join(part for part in (source, key, reason) if part))


def join_key(prefix: str | None, key: str | None) -> str | None:
    """``prefix`` and ``key`` as one dotted path (``agents`` + ``[1]`` -> ``agents[1]``)."""
    if not prefix:
        return key
    if not key:
        return prefix
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def describe(value: object) -> str:
    """A value as a YAML author would recognise it, cut short if long."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # -1, as written, rather than the -1.0 it was loaded as
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[: _MAX_SHOWN - 3]}..."


def describe_kind(value: object) -> str:
    """What sort of value this is, without showing it (for secrets)."""
    if value is None or isinstance(value, bool | Mapping | list | tuple):
        return describe(value)
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"
