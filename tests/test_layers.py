"""Layers that show: each package imports only the packages below it.

The order, lowest first, is the README's layout table. ``volta/`` itself (the CLI
and the wiring from configuration to a running node) sits on top of everything;
nothing below it may import its private modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import volta

ROOT = Path(volta.__file__).parent

BELOW: dict[str, set[str]] = {
    "core": set(),
    "protocol": {"core"},
    "bus": {"core", "protocol"},
    "supervisor": {"core"},
    "actors": {"core", "protocol", "bus", "supervisor"},
    "node": {"core", "protocol", "bus", "supervisor", "actors"},
    "brains": {"core", "protocol", "bus", "supervisor", "actors"},
    "config": {"core", "protocol", "bus", "supervisor"},
}
"""What each package may import (besides itself)."""


def volta_imports(source: Path) -> set[str]:
    """The ``volta.<package>`` (or ``volta._module``) names a module imports."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "volta" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(BELOW))
def test_a_package_imports_only_what_lies_below_it(package: str) -> None:
    sources = sorted((ROOT / package).glob("*.py"))
    assert sources, f"no modules in {package}"
    for source in sources:
        imported = volta_imports(source) - {package}
        assert imported <= BELOW[package], f"{package}/{source.name} imports {imported}"


def test_the_check_can_fail() -> None:
    """The wiring on top does import the packages, private modules included."""
    assert {"node", "config", "_runtime"} <= volta_imports(ROOT / "_cli.py")
