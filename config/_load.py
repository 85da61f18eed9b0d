"""YAML -> :class:`VoltaConfig`, with errors that name the file, the key and what was expected.

PyYAML parses (safe loading only, and a key given twice in one mapping is an
error rather than last-one-wins); one cattrs converter turns the result into the
attrs classes of ``_schema``. The converter is strict where cattrs is lenient by
default: a string is not a number, ``"false"`` is not a bool, a string is not a
list, and a key the schema does not know is an error with a suggestion.

A bad document raises exactly one :class:`ConfigError`, for the first problem
found; nothing is aggregated. The order is fixed: for each mapping, unknown keys,
then missing keys, then each value in field order (a nested section is checked
whole, its own range checks included), and last the range and cross-field checks
of the mapping itself, which run only once all its values are well formed.
"""

from __future__ import annotations

import difflib
import enum
import math
import os
import re
import typing
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import attrs
import cattrs
import yaml
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from ._errors import ConfigError, describe, describe_kind, join_key
from ._schema import VoltaConfig

_StructureHook = Callable[[Any, Any], Any]

_SHIPPED_NAME = re.compile(r"[A-Za-z0-9_-]+")
# attrs' own validators (used by volta.bus.ReconnectPolicy) say "'jitter' must be <= 1: 2.0".
_ATTRS_BOUND = re.compile(r"'(?P<name>\w+)' must be (?P<op>[<>]=?) (?P<bound>\S+): (?P<value>.*)")


# --- YAML -------------------------------------------------------------------------------


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in the same mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` keys may be overridden on purpose
            key = self.construct_object(key_node, deep=deep)
            try:
                first_line = seen.get(key)
            except TypeError:
                continue  # unhashable; the base class reports it
            if first_line is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {describe(key)}, already given at line {first_line}",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as error:
        # Built from the parts, not str(error): that quotes the offending line,
        # which may hold a password.
        what = ", ".join(part for part in (error.context, error.problem) if part)
        mark = error.problem_mark or error.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(
            f"not valid YAML: {what or 'parse error'}{where}", source=source
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"not valid YAML: {error}", source=source) from None


# --- the converter ----------------------------------------------------------------------


def _structure_str(value: object, _type: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {describe(value)}")
    return value


def _structure_secret(value: object, _type: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(f"expected a string, got {describe_kind(value)}")


def _structure_float(value: object, _type: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"expected a number, got {describe(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"expected a finite number, got {describe(value)}")
    return float(value)


def _structure_int(value: object, _type: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected an integer, got {describe(value)}")
    return value


def _structure_bool(value: object, _type: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {describe(value)}")
    return value


def _structure_path(value: object, _type: object) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"expected a path, got {describe(value)}")
    return Path(value)


def _is_enum(type_: object) -> bool:
    return isinstance(type_, type) and issubclass(type_, enum.Enum)


def _enum_hook(enum_type: type[enum.Enum]) -> _StructureHook:
    values = [str(member.value) for member in enum_type]

    def structure(value: object, _type: object) -> enum.Enum:
        if isinstance(value, str) and value in values:
            return enum_type(value)
        expected = f"expected one of {', '.join(repr(v) for v in values)}"
        close = difflib.get_close_matches(value, values, n=1) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{expected}, got {describe(value)}{hint}")

    return structure


def _is_homogeneous_tuple(type_: object) -> bool:
    args = typing.get_args(type_)
    return typing.get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


def _tuple_hook(converter: cattrs.Converter) -> Callable[[Any], _StructureHook]:
    def factory(tuple_type: Any) -> _StructureHook:
        item_type = typing.get_args(tuple_type)[0]
        structure_item = converter.get_structure_hook(item_type)

        def structure(value: object, _type: object) -> tuple[Any, ...]:
            # A YAML sequence is a list; a string would otherwise become a tuple of letters.
            if not isinstance(value, list):
                raise ConfigError(f"expected a list, got {describe(value)}")
            items: list[Any] = []
            errors: list[Exception] = []
            for index, item in enumerate(value):
                try:
                    items.append(structure_item(item, item_type))
                except Exception as error:  # collected and re-raised as one group, like cattrs
                    error.add_note(IterableValidationNote(f"@ index {index}", index, item_type))
                    errors.append(error)
            if errors:
                raise IterableValidationError(
                    f"While structuring {tuple_type!r}", errors, tuple_type
                )
            return tuple(items)

        return structure

    return factory


def _attrs_hook(converter: cattrs.Converter) -> Callable[[Any], _StructureHook]:
    def factory(cls: type[Any]) -> _StructureHook:
        fields = [field for field in attrs.fields(cls) if field.init]
        known = [field.name for field in fields]
        required = [field.name for field in fields if field.default is attrs.NOTHING]
        # Fields hidden from repr are secrets: their values stay out of errors too.
        secrets: dict[str, Any] = {
            field.name: override(struct_hook=_structure_secret)
            for field in fields
            if not field.repr
        }
        structure_fields = make_dict_structure_fn(cls, converter, **secrets)

        def structure(value: object, _type: object) -> Any:
            if not isinstance(value, Mapping):
                raise ConfigError(f"expected a mapping, got {describe(value)}")
            for key in value:
                if key not in known:
                    close = difflib.get_close_matches(str(key), known, n=1)
                    hint = (
                        f"did you mean {close[0]!r}?"
                        if close
                        else f"expected one of {', '.join(known)}"
                    )
                    raise ConfigError(f"unknown key ({hint})", key=str(key))
            for name in required:
                if name not in value:
                    raise ConfigError("required key is missing", key=name)
            return structure_fields(value, cls)

        return structure

    return factory


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(
        forbid_extra_keys=True,  # also checked (with suggestions) by the attrs hook
        prefer_attrib_converters=True,  # NatsConfig.url and AgentConfig.options parse themselves
        detailed_validation=True,  # errors carry the attribute names and list indexes
    )
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(Path, _structure_path)
    converter.register_structure_hook_factory(_is_enum, _enum_hook)
    converter.register_structure_hook_factory(_is_homogeneous_tuple, _tuple_hook(converter))
    converter.register_structure_hook_factory(attrs.has, _attrs_hook(converter))
    return converter


_converter = _make_converter()


def _first_problem(error: BaseException, path: str | None) -> tuple[str | None, str]:
    """The key path and reason of the first leaf problem inside a cattrs error group."""
    if isinstance(error, ClassValidationError | IterableValidationError):
        inner = error.exceptions[0]
        for note in getattr(inner, "__notes__", ()):
            if isinstance(note, AttributeValidationNote):
                return _first_problem(inner, join_key(path, note.name))
            if isinstance(note, IterableValidationNote):
                return _first_problem(inner, f"{path or ''}[{note.index}]")
        return _first_problem(inner, path)  # raised by the class itself: a validator
    if isinstance(error, ConfigError):
        return join_key(path, error.key), error.reason
    match = _ATTRS_BOUND.fullmatch(str(error))
    if match:
        try:
            value = describe(float(match["value"]))
        except ValueError:
            value = match["value"]
        return (
            join_key(path, match["name"]),
            f"expected a number {match['op']} {match['bound']}, got {value}",
        )
    return path, f"{type(error).__name__}: {error}"


def _structure(data: object, source: str) -> VoltaConfig:
    if data is None:
        raise ConfigError(
            "empty document: expected a mapping with at least 'agents'", source=source
        )
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"expected a mapping at the top level, got {describe(data)}", source=source
        )
    try:
        return _converter.structure(data, VoltaConfig)
    except (BaseValidationError, ConfigError) as error:
        key, reason = _first_problem(error, None)
        raise ConfigError(reason, key=key, source=source) from None


# --- overrides --------------------------------------------------------------------------

_ENVIRON_FIELDS = (
    ("NATS_URL", "url"),
    ("NATS_USER", "user"),
    ("NATS_PASSWORD", "password"),
    ("NATS_TOKEN", "token"),
    ("NATS_CREDS", "creds_file"),
)


def _apply_environ(config: VoltaConfig, environ: Mapping[str, str]) -> VoltaConfig:
    nats = config.nats
    for variable, field in _ENVIRON_FIELDS:
        value = environ.get(variable)
        if not value:
            continue  # unset and empty both keep the file's value
        change: dict[str, Any] = {field: Path(value) if field == "creds_file" else value}
        try:
            nats = attrs.evolve(nats, **change)
        except ConfigError as error:
            raise ConfigError(
                error.reason, key=join_key("nats", error.key), source=f"${variable}"
            ) from None
    return attrs.evolve(config, nats=nats)


def with_overrides(
    config: VoltaConfig,
    *,
    nats_url: str | None = None,
    heartbeat_interval: float | None = None,
) -> VoltaConfig:
    """``config`` with the values given on the command line (None keeps the current one).

    Args:
        config: the loaded configuration.
        nats_url: one server URL, or several separated by commas (``--nats-url``).
        heartbeat_interval: seconds between heartbeats (``--heartbeat-interval``).

    Raises:
        ConfigError: a value is not acceptable; ``source`` is ``"override"``.
    """
    if nats_url is not None:
        try:
            nats = attrs.evolve(config.nats, url=nats_url)
        except ConfigError as error:
            raise ConfigError(
                error.reason, key=join_key("nats", error.key), source="override"
            ) from None
        config = attrs.evolve(config, nats=nats)
    if heartbeat_interval is not None:
        try:
            config = attrs.evolve(config, heartbeat_interval=heartbeat_interval)
        except ConfigError as error:
            raise ConfigError(error.reason, key=error.key, source="override") from None
    return config


# --- entry points -----------------------------------------------------------------------


def load_config_text(
    text: str, *, source: str = "<string>", environ: Mapping[str, str] | None = None
) -> VoltaConfig:
    """Parse and check a configuration held in a string.

    Args:
        text: the YAML document.
        source: what to call it in errors.
        environ: environment to take ``NATS_URL`` (comma-separated), ``NATS_USER``,
            ``NATS_PASSWORD``, ``NATS_TOKEN`` and ``NATS_CREDS`` from; they override
            the ``nats`` section. None applies no overrides.

    Raises:
        ConfigError: the first problem found, with ``source`` and the key path.
    """
    config = _structure(_parse_yaml(text, source), source)
    if environ is not None:
        config = _apply_environ(config, environ)
    return config


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> VoltaConfig:
    """Read and check a configuration file.

    Args:
        path: the YAML file.
        environ: as for :func:`load_config_text`; the CLI passes ``os.environ``.

    Raises:
        ConfigError: the file cannot be read, is not YAML, or is not a valid
            configuration; the message names the file and the key at fault.
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"not UTF-8 text (bad byte at offset {error.start})", source=source
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read the file: {error.strerror}", source=source) from None
    return load_config_text(text, source=source, environ=environ)


def shipped_config(name: str = "seed") -> Path:
    """The path of a configuration shipped with Volta, in ``volta/config/agents/``.

    Args:
        name: ``seed`` (three agents in one container) or ``alpha``, ``beta``,
            ``gamma`` (one agent per container).

    Raises:
        ConfigError: no shipped configuration has that name.
    """
    folder = files(__package__) / "agents"
    resource = folder / f"{name}.yaml"
    if not _SHIPPED_NAME.fullmatch(name) or not resource.is_file():
        shipped = sorted(
            entry.name.removesuffix(".yaml")
            for entry in folder.iterdir()
            if entry.name.endswith(".yaml")
        )
        raise ConfigError(f"no shipped config {name!r} (shipped: {', '.join(shipped)})")
    # Volta is installed as plain files (never zipped), so this is a real path.
    return Path(str(resource))
