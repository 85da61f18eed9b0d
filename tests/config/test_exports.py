"""The public surface of volta.config is deliberate, and its classes follow the house style."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import attrs
import pytest

import volta.config

PUBLIC = {
    "DEFAULT_NATS_URL",
    "AgentConfig",
    "BackoffConfig",
    "BrainConfig",
    "ConfigError",
    "ConfigProblem",
    "ConnectionMode",
    "DirectoryConfig",
    "NatsConfig",
    "SupervisionConfig",
    "SupervisionStrategy",
    "VoltaConfig",
    "load_config",
    "load_config_text",
    "shipped_config",
    "with_overrides",
}
CLASSES = ["AgentConfig", "BackoffConfig", "NatsConfig", "SupervisionConfig", "VoltaConfig"]


def test_public_names() -> None:
    assert set(volta.config.__all__) == PUBLIC
    assert len(volta.config.__all__) == len(PUBLIC)
    public = {name for name in vars(volta.config) if not name.startswith("_")}
    assert public == PUBLIC


AGENT = volta.config.AgentConfig(id="a", handler="echo")
INSTANCES = [
    AGENT,
    volta.config.BackoffConfig(),
    volta.config.NatsConfig(),
    volta.config.SupervisionConfig(),
    volta.config.VoltaConfig(agents=(AGENT,)),
]


@pytest.mark.parametrize("instance", INSTANCES, ids=lambda instance: type(instance).__name__)
def test_config_classes_are_frozen(instance: attrs.AttrsInstance) -> None:
    assert type(instance).__name__ in CLASSES
    for field in attrs.fields(type(instance)):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(instance, field.name, None)


def class_definition(name: str) -> ast.ClassDef:
    """Where a class of volta.config is written (its ``__module__`` is the package's)."""
    folder = Path(inspect.getfile(volta.config)).parent
    for source in sorted(folder.glob("*.py")):
        for node in ast.parse(source.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return node
    raise AssertionError(f"class {name} not found in {folder}")


@pytest.mark.parametrize("name", CLASSES)
def test_every_field_has_a_docstring(name: str) -> None:
    cls = getattr(volta.config, name)
    body = class_definition(name)
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
