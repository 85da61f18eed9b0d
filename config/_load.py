"""YAML -> :class:`~volta.node.NodeSpec`, with errors that name the file, the key and what
was expected.

PyYAML parses (safe loading only, and a key given twice in one mapping is an
error rather than last-one-wins); given an environment, ``${VAR}`` references in
values are substituted (``_interpolate``); one cattrs converter turns the result
into the runtime's own spec classes (``NodeSpec``, ``AgentSpec``, ``BusOptions``,
``SupervisionPolicy``, ``Backoff``, ``BrainSpec``, ...): a YAML key is a field, and
the field's own validators check it, so there is no second schema to keep in step.
The converter is strict where cattrs is lenient by default: a string is not a
number, ``"false"`` is not a bool, a string is not a list, and a key the schema does
not know is an error with a suggestion. A section (``nats:``) changes the keys it
names of the section's default; the few keys whose YAML name or type is not the
field's are listed in ``_YAML_KEYS`` and ``_YAML_TYPES``.

A bad document raises one :class:`ConfigError` that holds every problem found.
A document that is not YAML (or not a mapping) has just that one problem. Else the
problems come in this order: the bad variable references, in document order;
then, for each mapping, its unknown keys, its missing keys, and each value in
field order (a nested section is checked whole, its own range checks included);
and last the range and cross-field checks of the mapping itself, which run only
once all its values are well formed, so that one mistake does not set off others.
A value whose references could not be substituted reports only that.
"""

from __future__ import annotations

import difflib
import enum
import math
import os
import re
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
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

from volta.actors import AgentSpec
from volta.brains import BrainSpec
from volta.bus import BusOptions
from volta.core._settings import (
    ConfigError,
    ConfigProblem,
    describe,
    describe_kind,
    join_key,
    nested,
)
from volta.node import NodeSpec

from ._interpolate import interpolate

_StructureHook = Callable[[Any, Any], Any]

_SHIPPED_NAME = re.compile(r"[A-Za-z0-9_-]+")


# --- YAML -------------------------------------------------------------------------------


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in the same mapping, and
    remembers which scalars are plain (typed by their text) for ``_interpolate``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.plain: set[int] = set()

    def compose_scalar_node(self, anchor: dict[Any, yaml.Node]) -> yaml.ScalarNode:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # (untyped in the stubs)
        node = super().compose_scalar_node(anchor)
        if isinstance(event, yaml.ScalarEvent) and event.tag is None and event.implicit[0]:
            self.plain.add(id(node))
        return node

    def resolve_plain(self, value: str) -> str:
        """The tag YAML gives a plain scalar that reads ``value``."""
        tag: str = self.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        return tag

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as error:
            # A scalar that YAML reads as a date that does not exist (2001-13-45) or an
            # empty number (0x_): a YAML error at the scalar, not a crash.
            raise yaml.constructor.ConstructorError(
                None, None, str(error), node.start_mark
            ) from None

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


def _secret_names(cls: type[Any]) -> frozenset[str]:
    """Names of the fields hidden from repr (secrets) in ``cls`` and the classes inside it."""
    names: set[str] = set()
    pending, seen = [cls], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for field in attrs.fields(attrs.resolve_types(current)):
            if not field.repr:
                names.add(field.name)
            types = [field.type]
            while types:
                type_ = types.pop()
                types += typing.get_args(type_)
                if attrs.has(type_):
                    pending.append(type_)
    return frozenset(names)


_SECRETS = _secret_names(NodeSpec)


def _parse_yaml(
    text: str, source: str, environ: Mapping[str, str] | None
) -> tuple[object, list[ConfigProblem]]:
    """The document's data, and the problems of its ``${VAR}`` references."""
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        problems = []
        if environ is not None:
            problems = interpolate(
                node,
                environ,
                plain=loader.plain,
                resolve=loader.resolve_plain,
                secrets=_SECRETS,
            )
        return loader.construct_document(node), problems
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
    except RecursionError:
        raise ConfigError("not valid YAML: nested too deeply", source=source) from None
    finally:
        loader.dispose()


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
        raise ConfigError(f"expected a number, got {describe(value)}{_as_text(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"expected a finite number, got {describe(value)}")
    return float(value)


_EXPONENT = re.compile(r"[+-]?[0-9]+[eE][+-]?[0-9]+")


def _as_text(value: object) -> str:
    """Why YAML gave a string for what reads as a number: YAML 1.1 wants a dot in
    ``1e3`` (``1.0e3``); without it, the scalar is text."""
    if isinstance(value, str) and _EXPONENT.fullmatch(value):
        return " (YAML took it for text: write 1e3 as 1.0e3)"
    return ""


def _structure_int(value: object, _type: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected an integer, got {describe(value)}{_as_text(value)}")
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


_YAML_KEYS: dict[tuple[type[Any], str], str] = {(BusOptions, "servers"): "url"}
"""Fields whose YAML key is not their name."""

_YAML_TYPES: dict[tuple[type[Any], str], Any] = {
    (AgentSpec, "handler"): str | None,  # a name or reference: the object is built later
    (AgentSpec, "brain"): BrainSpec | None,  # (actors knows only the HandlerRecipe protocol)
}
"""Fields whose YAML value has another type than the field (built from it later)."""


def _yaml_key(cls: type[Any], field: attrs.Attribute[Any]) -> str:
    return _YAML_KEYS.get((cls, field.name), field.name)


E = typing.TypeVar("E", bound=Exception)


def _renamed(error: E, cls: type[Any]) -> E:
    """A class's own error (keys relative to it) with its fields' YAML keys."""
    if not isinstance(error, ConfigError):
        return error
    aliases = {name: key for (owner, name), key in _YAML_KEYS.items() if owner is cls}
    if not aliases:
        return error
    problems = []
    for problem in error.problems:
        key = problem.key
        if key is not None:
            head = key.split(".", 1)[0].split("[", 1)[0]
            if head in aliases:
                key = aliases[head] + key[len(head) :]
        problems.append(ConfigProblem(key, problem.reason))
    renamed = type(error).from_problems(problems)  # (keeps _UnknownKey and the like)
    return typing.cast(E, renamed)


class _UnknownKey(ConfigError):
    """A key the schema does not know: a problem of the key, whatever its value."""


_MOVED: dict[tuple[type[Any], str], str] = {
    (BrainSpec, "budget"): "it is the agent's now: write 'budget' beside 'brain'",
    (BrainSpec, "task_timeout"): "it is the agent's now: write 'task_timeout' beside 'brain'",
}
"""Keys that moved, and where to (what a file written for an older Volta is told)."""


def _unknown_key(key: object, known: list[str], cls: type[Any]) -> ConfigError:
    moved = _MOVED.get((cls, str(key)))
    if moved is not None:
        return _UnknownKey(f"unknown key ({moved})", key=str(key))
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(known)}"
    return _UnknownKey(f"unknown key ({hint})", key=str(key))


def _structured_type(cls: type[Any], field: attrs.Attribute[Any]) -> Any:
    """The type the loader builds a field's YAML value into (its own, or the YAML one)."""
    return _YAML_TYPES.get((cls, field.name), field.type)


def _holds_specs(type_: Any) -> bool:
    """Whether values of this type are (or hold) spec classes the loader builds."""
    return attrs.has(type_) or any(_holds_specs(arg) for arg in typing.get_args(type_))


def _default_section(field: attrs.Attribute[Any]) -> Any:
    """The value a section starts from: the field's default, when it is a spec."""
    default = field.default
    factory = getattr(default, "factory", None)  # an attrs.Factory
    if callable(factory) and not getattr(default, "takes_self", False):
        default = factory()
    return default if attrs.has(type(default)) else None


def _field_hook(
    converter: cattrs.Converter, cls: type[Any], field: attrs.Attribute[Any]
) -> Callable[[Any], Any]:
    """How the loader turns the YAML value of one field into what the class is given."""
    type_ = _structured_type(cls, field)
    if field.converter is not None and not _holds_specs(type_):
        # The field converts its own value (BusOptions.servers, AgentSpec.options): it is
        # given the value as written, tried here first so that its errors come in order.
        # Like a validator, a converter's errors name keys relative to the class.
        convert = field.converter
        if isinstance(convert, attrs.Converter):
            return lambda value: value  # (takes self or the field: only the class can run it)

        def check(value: Any) -> Any:
            convert(value)
            return value

        return check
    if not field.repr:
        # Fields hidden from repr are secrets: their values stay out of errors too.
        return lambda value: _structure_secret(value, type_)
    section = _default_section(field)
    if section is not None:
        # A section in YAML changes the keys it names of the section's default (a node's
        # `nats` keeps retrying its first connection unless the file says otherwise).
        hook = converter.get_structure_hook(type(section))
        return lambda value: _on_top_of(section, hook(value, type(section)), value)
    hook = converter.get_structure_hook(type_)
    return lambda value: hook(value, type_)


def _on_top_of(section: Any, built: Any, written: object) -> Any:
    """``section`` with the keys ``written`` names taken from ``built``."""
    if not isinstance(written, Mapping):
        return built
    changes = {
        field.alias: getattr(built, field.name)
        for field in attrs.fields(type(section))
        if _yaml_key(type(section), field) in written
    }
    return attrs.evolve(section, **changes)


def _build(cls: type[Any], arguments: dict[str, Any]) -> Any:
    """``cls(**arguments)``, or every validator error the arguments give, as one group."""
    try:
        return cls(**arguments)
    except Exception as error:
        first = error
    # attrs stops at the first validator that fails: build the instance without them
    # and run each one. The switch is process-wide (attrs' own, not thread-safe), but
    # only this call runs under it: the nested values are built already.
    errors: list[Exception] = []
    try:
        with attrs.validators.disabled():
            instance = cls(**arguments)
    except Exception:
        errors.append(_renamed(first, cls))  # a converter failed: only that is known
    else:
        for field in attrs.fields(cls):
            if field.validator is not None:
                try:
                    field.validator(instance, field, getattr(instance, field.name))
                except ConfigError as error:  # keys relative to the class
                    errors.append(_renamed(error, cls))
                except Exception as error:  # another validator's: it is about this field
                    errors.append(ConfigError(str(error), key=_yaml_key(cls, field)))
    raise ClassValidationError(f"While structuring {cls.__name__}", errors or [first], cls)


def _attrs_hook(converter: cattrs.Converter) -> Callable[[Any], _StructureHook]:
    def factory(cls: type[Any]) -> _StructureHook:
        fields = [field for field in attrs.fields(attrs.resolve_types(cls)) if field.init]
        keys = {_yaml_key(cls, field): field for field in fields}
        known = list(keys)
        required = [key for key, field in keys.items() if field.default is attrs.NOTHING]
        hooks = {field.name: _field_hook(converter, cls, field) for field in fields}

        def structure(value: object, _type: object) -> Any:
            if not isinstance(value, Mapping):
                raise ConfigError(f"expected a mapping, got {describe(value)}")
            errors: list[Exception] = [
                _unknown_key(key, known, cls) for key in value if key not in keys
            ]
            errors += [
                ConfigError("required key is missing", key=key)
                for key in required
                if key not in value
            ]
            arguments: dict[str, Any] = {}
            for key, field in keys.items():
                if key not in value:
                    continue
                try:
                    arguments[field.alias] = hooks[field.name](value[key])
                except Exception as error:  # collected and raised as one group, like cattrs
                    if field.converter is None or _holds_specs(_structured_type(cls, field)):
                        error.add_note(
                            AttributeValidationNote(
                                f"Structuring class {cls.__qualname__} @ attribute {key}",
                                key,
                                field.type,
                            )
                        )
                    else:  # a converter names its keys, like a validator
                        error = _renamed(error, cls)
                    errors.append(error)
            if errors:
                raise ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
            return _build(cls, arguments)

        return structure

    return factory


def _make_converter() -> cattrs.Converter:
    # The attrs hook checks the keys, structures the fields and runs the converters
    # and validators itself, so that it can report every problem.
    converter = cattrs.Converter(detailed_validation=True)
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


def _problems(
    error: BaseException, path: str | None, left_as_written: Collection[str | None]
) -> Iterator[ConfigProblem]:
    """Every leaf problem inside a cattrs error group, with its key path from the root.

    Problems of the values at or inside ``left_as_written`` (the keys whose ``${VAR}``
    could not be substituted) are left out: they would only be nonsense of their own.
    """
    if isinstance(error, ClassValidationError | IterableValidationError):
        for inner in error.exceptions:
            inner_path = path  # without a note: raised by the class itself (a validator)
            for note in getattr(inner, "__notes__", ()):
                if isinstance(note, AttributeValidationNote):
                    inner_path = join_key(path, note.name)
                    break
                if isinstance(note, IterableValidationNote):
                    inner_path = f"{path or ''}[{note.index}]"
                    break
            yield from _problems(inner, inner_path, left_as_written)
        return
    if isinstance(error, ConfigError):
        problems = [ConfigProblem(join_key(path, p.key), p.reason) for p in error.problems]
    else:
        problems = [ConfigProblem(path, f"{type(error).__name__}: {error}")]
    for problem in problems:
        if isinstance(error, _UnknownKey) or not any(
            _within(problem.key, key) for key in left_as_written
        ):
            yield problem


def _within(key: str | None, prefix: str | None) -> bool:
    """Whether ``key`` is ``prefix`` or a key inside it (None is the whole document)."""
    if prefix is None:
        return True
    return key is not None and (key == prefix or key.startswith((f"{prefix}.", f"{prefix}[")))


def _structure(data: object, source: str, unsubstituted: list[ConfigProblem]) -> NodeSpec:
    """The configuration in ``data``; ``unsubstituted``: the bad ``${VAR}`` references."""
    if data is None:
        raise ConfigError(
            "empty document: expected a mapping with at least 'agents'", source=source
        )
    if not isinstance(data, Mapping):
        if unsubstituted:  # the whole document is one scalar: only its references count
            raise ConfigError.from_problems(unsubstituted, source=source)
        raise ConfigError(
            f"expected a mapping at the top level, got {describe(data)}", source=source
        )
    try:
        config: NodeSpec = _converter.structure(data, NodeSpec)
    except (BaseValidationError, ConfigError) as error:
        left_as_written = {problem.key for problem in unsubstituted}
        problems = [*unsubstituted, *_problems(error, None, left_as_written)]
        raise ConfigError.from_problems(problems, source=source) from None
    if unsubstituted:
        raise ConfigError.from_problems(unsubstituted, source=source)
    return config


# --- overrides --------------------------------------------------------------------------

_ENVIRON_FIELDS = (
    ("NATS_URL", "servers"),
    ("NATS_USER", "user"),
    ("NATS_PASSWORD", "password"),
    ("NATS_TOKEN", "token"),
    ("NATS_CREDS", "creds_file"),
)


def _apply_environ(config: NodeSpec, environ: Mapping[str, str]) -> NodeSpec:
    nats = config.nats
    for variable, field in _ENVIRON_FIELDS:
        value = environ.get(variable)
        if not value:
            continue  # unset and empty both keep the file's value
        change: dict[str, Any] = {field: Path(value) if field == "creds_file" else value}
        try:
            nats = attrs.evolve(nats, **change)
        except ConfigError as error:
            raise nested(_renamed(error, BusOptions), "nats", source=f"${variable}") from None
    return attrs.evolve(config, nats=nats)


def with_overrides(
    config: NodeSpec,
    *,
    nats_url: str | None = None,
    heartbeat_interval: float | None = None,
) -> NodeSpec:
    """``config`` with the values given on the command line (None keeps the current one).

    Args:
        config: the loaded configuration.
        nats_url: one server URL, or several separated by commas (``--nats-url``).
        heartbeat_interval: seconds between heartbeats (``--heartbeat-interval``): the
            node's, so every agent's that does not set its own.

    Raises:
        ConfigError: a value is not acceptable; ``source`` is ``"override"``.
    """
    if nats_url is not None:
        try:
            nats = attrs.evolve(config.nats, servers=nats_url)
        except ConfigError as error:
            raise nested(_renamed(error, BusOptions), "nats", source="override") from None
        config = attrs.evolve(config, nats=nats)
    if heartbeat_interval is not None:
        try:
            config = attrs.evolve(config, heartbeat_interval=heartbeat_interval)
        except ConfigError as error:
            raise nested(error, None, source="override") from None
    return config


# --- entry points -----------------------------------------------------------------------


def load_config_text(
    text: str, *, source: str = "<string>", environ: Mapping[str, str] | None = None
) -> NodeSpec:
    """Parse and check a configuration held in a string.

    Args:
        text: the YAML document.
        source: what to call it in errors.
        environ: the environment, or None to read the document as written. Given
            one, ``${VAR}``, ``${VAR:-default}`` and ``${VAR-default}`` in values
            are substituted from it (``$$`` is a literal ``$``), and then
            ``NATS_URL`` (comma-separated), ``NATS_USER``, ``NATS_PASSWORD``,
            ``NATS_TOKEN`` and ``NATS_CREDS`` override the ``nats`` section.

    Raises:
        ConfigError: every problem found, each with its key path; ``source`` names
            the document.
    """
    data, unsubstituted = _parse_yaml(text, source, environ)
    config = _structure(data, source, unsubstituted)
    if environ is not None:
        config = _apply_environ(config, environ)
    return config


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> NodeSpec:
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
        name: ``seed`` (three agents in one container) or ``coordinator``,
            ``researcher``, ``writer`` (one agent per container).

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
