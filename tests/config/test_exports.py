"""The public surface of volta.config is deliberate, and the classes a YAML file loads
into follow the house style: frozen, and a docstring for every field (the reference
for what each key means)."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import attrs
import pytest

import volta
import volta.config
from volta.config._load import _YAML_TYPES
from volta.node import NodeSpec

PUBLIC = {
    "ConfigError",
    "ConfigProblem",
    "assemble",
    "load_config",
    "load_config_text",
    "shipped_config",
    "with_overrides",
}


def test_public_names() -> None:
    assert set(volta.config.__all__) == PUBLIC
    assert len(volta.config.__all__) == len(PUBLIC)
    public = {name for name in vars(volta.config) if not name.startswith("_")}
    assert public == PUBLIC


def yaml_classes() -> list[type]:
    """Every class a YAML file is loaded into, from the root down."""
    found: list[type] = []
    pending: list[object] = [NodeSpec]
    while pending:
        type_ = pending.pop()
        if isinstance(type_, type) and attrs.has(type_) and type_ not in found:
            found.append(type_)
            for field in attrs.fields(attrs.resolve_types(type_)):
                pending.append(_YAML_TYPES.get((type_, field.name), field.type))
        else:
            pending += typing.get_args(type_)
    return found


CLASSES = yaml_classes()


def test_the_classes_are_the_runtimes_own() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert names == {
        "NodeSpec",
        "BusOptions",
        "ReconnectPolicy",
        "SupervisionPolicy",
        "Backoff",
        "DirectorySpec",
        "RouterSpec",
        "DurableSpec",
        "Intensity",
        "AgentSpec",
        "BrainSpec",
    }
    assert {cls.__module__.split(".")[1] for cls in CLASSES} == {
        "node",
        "bus",
        "actors",
        "supervisor",
        "brains",
    }


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_config_classes_are_frozen(cls: type) -> None:
    assert attrs.has(cls)
    assert cls.__setattr__.__name__ == "_frozen_setattrs"  # what attrs.frozen installs


def class_definition(name: str) -> ast.ClassDef:
    """Where a class is written (its ``__module__`` is its package's, not its file's)."""
    root = Path(volta.__file__).parent
    for source in sorted(root.glob("*/*.py")):
        for node in ast.parse(source.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return node
    raise AssertionError(f"class {name} not found under {root}")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_field_has_a_docstring(cls: type) -> None:
    body = class_definition(cls.__name__)
    documented = set()
    for statement, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            documented.add(statement.target.id)
    assert documented == {field.name for field in attrs.fields(cls)}
