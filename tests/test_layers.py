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
    "config": {"core", "protocol", "bus", "supervisor", "actors", "node", "brains"},
}
"""What each package may import (besides itself)."""

WIRING = {"config"}
"""Packages that put the others together: they alone may use what another package
keeps out of its public face (how handlers are resolved, the built-ins)."""


def imported_modules(source: Path) -> set[str]:
    """The ``volta...`` modules a module imports, in full."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "volta"}


def volta_imports(source: Path) -> set[str]:
    """The ``volta.<package>`` (or ``volta._module``) names a module imports."""
    return {name.split(".")[1] for name in imported_modules(source) if "." in name}


@pytest.mark.parametrize("package", sorted(BELOW))
def test_a_package_imports_only_what_lies_below_it(package: str) -> None:
    sources = sorted((ROOT / package).glob("*.py"))
    assert sources, f"no modules in {package}"
    for source in sources:
        imported = volta_imports(source) - {package}
        assert imported <= BELOW[package], f"{package}/{source.name} imports {imported}"


@pytest.mark.parametrize("package", sorted(set(BELOW) - WIRING))
def test_a_package_uses_only_the_public_face_of_the_others(package: str) -> None:
    for source in sorted((ROOT / package).glob("*.py")):
        for name in imported_modules(source):
            parts = name.split(".")
            if len(parts) > 2 and parts[1] != package:
                assert not parts[2].startswith("_"), f"{package}/{source.name} imports {name}"


def test_the_check_can_fail() -> None:
    """The wiring on top does import the packages, private modules included."""
    assert {"node", "config", "_runtime"} <= volta_imports(ROOT / "_cli.py")
