"""The one error a bad setting produces, wherever it is made: a YAML file, a flag, or
a spec built in Python; and how values are shown inside it.

Every spec class (``AgentSpec``, ``BusOptions``, ``Backoff``, ...) checks its values
with the validators of :mod:`volta.core.validators`, which raise :class:`ConfigError`
naming the field; the YAML loader (``volta.config``) puts the path from the document's
root in front of it and reports every problem of a file at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

_MAX_SHOWN = 60


@attrs.frozen
class ConfigProblem:
    """One thing wrong with a configuration; a :class:`ConfigError` holds one or more."""

    key: str | None
    """Dotted path of the offending key (``agents[1].capabilities[0]``), relative to
    whatever reports it; None when the problem is the document as a whole."""
    reason: str
    """What is wrong, in words. Never holds a password or a token."""

    def __str__(self) -> str:
        return ": ".join(part for part in (self.key, self.reason) if part)


class ConfigError(ValueError):
    """A configuration (a setting, a spec, a file) is not acceptable, for one reason or several.

    With one problem the message reads ``<source>: <key>: <reason>``, leaving out
    the parts that are not known, for example
    ``config/agents/seed.yaml: agents[1].id: invalid agent id 'a.b': use 1-64
    characters from A-Z a-z 0-9 _ -``. With several it names the source and the
    count, then each problem on a line of its own::

        config/x.yaml: 2 problems:
          agents[0].id: invalid agent id 'a.b': use 1-64 characters from A-Z a-z 0-9 _ -
          agents[1].handler: required key is missing

    ``ConfigError(reason, key=..., source=...)`` makes one problem;
    :meth:`from_problems` makes several.

    Attributes:
        source: where the configuration came from: a file path, ``"<string>"``,
            ``"$NATS_URL"`` for an environment override, ``"override"`` for
            :func:`with_overrides`; None for an object built directly in Python.
        problems: every problem found, in document order (within a mapping: unknown
            keys, missing keys, then the values in field order); never empty.
        key: the key of the first problem (the only one, most often).
        reason: the reason of the first problem. Never holds a password or a token.
    """

    source: str | None
    problems: tuple[ConfigProblem, ...]

    def __init__(self, reason: str, *, key: str | None = None, source: str | None = None) -> None:
        self._set((ConfigProblem(key, reason),), source)

    @classmethod
    def from_problems(
        cls, problems: Iterable[ConfigProblem], *, source: str | None = None
    ) -> ConfigError:
        """One error for several problems (at least one), in the order given.

        Raises:
            ValueError: ``problems`` is empty.
        """
        problems = tuple(problems)
        if not problems:
            raise ValueError("a ConfigError needs at least one problem")
        error = cls.__new__(cls)
        error._set(problems, source)
        return error

    def _set(self, problems: tuple[ConfigProblem, ...], source: str | None) -> None:
        self.problems = problems
        self.source = source
        if len(problems) == 1:
            message = ": ".join(part for part in (source, str(problems[0])) if part)
        else:
            head = f"{len(problems)} problems:"
            lines = [f"{source}: {head}" if source else head]
            lines += [f"  {problem}" for problem in problems]
            message = "\n".join(lines)
        super().__init__(message)

    @property
    def key(self) -> str | None:
        """The key of the first problem."""
        return self.problems[0].key

    @property
    def reason(self) -> str:
        """The reason of the first problem."""
        return self.problems[0].reason


def nested(error: ConfigError, prefix: str | None, *, source: str | None) -> ConfigError:
    """``error`` with each key under ``prefix`` (``nats`` + ``url`` -> ``nats.url``)."""
    return ConfigError.from_problems(
        (
            ConfigProblem(join_key(prefix, problem.key), problem.reason)
            for problem in error.problems
        ),
        source=source,
    )


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


class ConfigTypeError(ConfigError, TypeError):
    """A setting of the wrong type (a string where a number goes): a :class:`ConfigError`
    that is also a ``TypeError``, as Python code expects of a wrong type."""
